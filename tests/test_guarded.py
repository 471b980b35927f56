"""The guarded default router: bad input, recorded fallbacks, save/load, and the command line's default router."""
import json
import numpy as np
import pytest

from mixexperts.core import MixExpertsError, data_path
from mixexperts.results import load_results
from mixexperts.routers import Router, get_router, kfold_splits, routed_correct
from mixexperts.routing_eval import cross_validate
from mixexperts.cli import run_captured

QUICK = ['subject', {'router': 'knn', 'k': 10, 'tau': 0.0}]


@pytest.fixture(scope='module')
def arc_small():
    "240 real ARC-Challenge questions (one task), the six strongest models."
    rm = load_results(data_path('lm_eval', 'arc'), progress=False)
    rm = rm.select(rm.accuracy().sort_values(ascending=False).index[:6].tolist())
    return rm.subset(np.sort(np.random.default_rng(0).choice(rm.n_questions, 240, replace=False)))


def test_one_model_is_refused_by_eval_and_falls_back_in_fit(arc_small, tmp_path):
    one = arc_small.select(arc_small.models[:1])
    with pytest.raises(MixExpertsError, match='routing needs at least 2 models'): cross_validate(one, ['guarded'], folds=3, progress=False)
    g = get_router('guarded', candidates=QUICK).fit(one)
    assert g.params['chosen'] is None and 'too few' in g.meta['guard']['reason']
    one.save(tmp_path / 'one.parquet')
    code, out, err = run_captured(['route', 'eval', str(tmp_path / 'one.parquet'), '--routers', 'best_single', '--folds', '3'])
    assert code == 2 and 'routing needs at least 2 models' in err and 'Traceback' not in err


def test_fewer_questions_than_folds(arc_small):
    with pytest.raises(MixExpertsError, match='5 folds for 3 questions'): cross_validate(arc_small.subset([0, 1, 2]), ['guarded'], folds=5, progress=False)
    g = get_router('guarded', candidates=QUICK, folds=3).fit(arc_small.subset(np.arange(5)))   # too few to test: the best single model
    assert g.params['chosen'] is None and g.route(['a question']).chosen == [arc_small.subset(np.arange(5)).best_single()[0]]


def test_one_task_benchmark_routes_like_the_best_single_model(arc_small):
    "ARC has one task: subject routing is the best single model, and the guard keeps it out of fold."
    res = cross_validate(arc_small, ['guarded', 'best_single'], folds=3, progress=False)
    assert res.summary()['routers']['guarded']['outcome'] in ('tie', 'win')
    assert (res.picks['guarded'] == res.best_single_picks()).mean() > 0.9


def test_a_candidate_that_cannot_fit_is_recorded(arc_small):
    "A router that fails on an inner fold (one class) is left out with its error; the others still compete."
    rm = arc_small.select(arc_small.models[:2])
    rows = np.flatnonzero((rm.correct[:, 0] == 1) & (rm.correct[:, 1] == 0))[:40]
    rm = rm.subset(np.sort(np.r_[rows, np.flatnonzero(rm.correct[:, 0] == rm.correct[:, 1])[:40]]))  # query_label: one class
    g = get_router('guarded', candidates=[{'router': 'query_label', 'weight_decay': 1e-4, 'steps': 30}, 'subject'], folds=2).fit(rm)
    failed = g.meta['guard']['failed']
    assert list(failed) == ["query_label{'weight_decay': 0.0001, 'steps': 30}"] and 'two classes' in next(iter(failed.values()))
    assert g.meta['guard']['choice'] in ('best_single', 'subject')


def test_guard_never_reads_held_out_rows_and_round_trips(arc_small, tmp_path):
    tr, te = kfold_splits(arc_small, 4, 0)[0]
    g = get_router('guarded', candidates=QUICK).fit(arc_small, tr)
    poisoned = arc_small.subset(np.arange(arc_small.n_questions))
    poisoned.correct[te] = 1 - np.nan_to_num(poisoned.correct[te])        # what a peeking router would notice
    h = get_router('guarded', candidates=QUICK).fit(poisoned, tr)
    assert h.params == g.params and h.meta['guard']['table'] == g.meta['guard']['table']
    back = Router.load(g.save(tmp_path / 'g'))
    test = arc_small.subset(te)
    assert (back.route_matrix(test).index == g.route_matrix(test).index).all() and back.params == json.loads(json.dumps(g.params))


def test_cli_default_router(arc_small, tmp_path):
    arc_small.save(tmp_path / 'arc.parquet')
    code, out, err = run_captured(['route', 'train', str(tmp_path / 'arc.parquet'), '--param', 'candidates=[subject]', '-o', str(tmp_path / 'r'), '--json'])
    assert code == 0, err
    assert json.loads(out)['router'] == 'guarded' and Router.load(tmp_path / 'r').name == 'guarded'
    code, out, err = run_captured(['route', 'eval', str(tmp_path / 'arc.parquet'), '--routers', 'best_single', '--folds', '3', '--json'])
    j = json.loads(out.splitlines()[-1])
    assert code == 0 and j['router'] == 'guarded' and list(j['routers']) == ['guarded', 'best_single']
    assert j['accuracy'] == j['routers']['guarded']['accuracy'] and 'best_single_accuracy' in j


def test_cli_eval_across_benchmarks(arc_small, tmp_path):
    csqa = load_results(data_path('lm_eval', 'csqa'), progress=False)
    csqa = csqa.subset(np.arange(150)).select(arc_small.models[:4])
    arc_small.select(arc_small.models[:4]).save(tmp_path / 'arc.parquet'); csqa.save(tmp_path / 'csqa.parquet')
    code, out, err = run_captured(['route', 'eval', str(tmp_path / 'arc.parquet'), str(tmp_path / 'csqa.parquet'),
                                   '--routers', 'best_single,subject', '--folds', '3', '--json'])
    assert code == 0, err
    lines = [json.loads(l) for l in out.splitlines()]
    assert len(lines) == 3 and [l['n_questions'] for l in lines[:2]] == [240, 150]
    last = lines[-1]
    assert last['router'] == 'guarded' and len(last['benchmarks']) == 2 and len(last['table']) == 6
    assert set(last['wins_ties_losses']) == {'guarded', 'best_single', 'subject'}
    assert all(sum(v.values()) == 2 for v in last['wins_ties_losses'].values())
    code, out, err = run_captured(['route', 'eval', str(tmp_path / 'arc.parquet'), str(tmp_path / 'csqa.parquet'), '--routers', 'best_single', '--folds', '3'])
    assert code == 0 and 'across 2 benchmarks' in out and 'win' in out
