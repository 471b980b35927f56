"""SLM-MUX offline: the rule, the sources, bad input, validation-only decisions, subset search and the CLI."""
import argparse, contextlib, io, itertools, json, math
import numpy as np
import pytest

from mixexperts.core import DataFormatError, MixExpertsError, data_path
from mixexperts.results import load_results
from mixexperts.voting import TIE_VOTE_GRID, get_confidence, mux_answer, mux_one, select_model, tally, vote_among_tied
from mixexperts.mux_sim import ChoiceSource, MuxSimulation, SampleSet, SubsetBits, search_subsets, split_validation
from mixexperts.cli import run_captured


@pytest.fixture(scope='module')
def arc():
    return load_results(data_path('lm_eval', 'arc'), progress=False, n_jobs=1)


@pytest.fixture(scope='module')
def arc_small(arc):
    return arc.subset(np.arange(300)).select(arc.accuracy().sort_values(ascending=False).index[:8].tolist())


def tiny_set(**kw):
    "3 questions x 3 models x 4 samples; answer id 0 is right everywhere."
    answers = np.array([[[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]],
                        [[1, 1, 1, 1], [0, 0, 0, 1], [0, 1, -1, -1]],
                        [[0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, -1]]])
    return SampleSet(answers, np.array([[True, False]] * 3), ['a', 'b', 'c'], **kw)


# --- the rule ------------------------------------------------------------------------------------------------

def test_mux_is_not_the_pooled_vote():
    x, y, z, w = 0, 1, 2, 3
    t = tally(np.array([[[x] * 5, [y] * 4 + [z], [y] * 4 + [w]]]), 4, rng=0)
    s, a = get_confidence('consistency').score(t)
    assert mux_answer(s, a, -np.arange(3)) == (0, x)
    assert np.argmax(t.counts.sum(1)) == y  # what the reference simulator would answer


def test_consistency_denominators_and_empty_answers():
    t = tally(np.array([[[0, -1, -1, -1, -1], [1, 1, 1, 1, 2]]]), 3, rng=0)
    assert np.allclose(get_confidence('consistency').score(t)[0], [[0.2, 0.8]])
    assert np.allclose(get_confidence('consistency', denominator='nonempty').score(t)[0], [[1.0, 0.8]])
    empty = tally(np.array([[[-1, -1, -1]]]), 2, rng=0)
    assert empty.answer.item() == -1 and get_confidence('consistency').score(empty)[0].item() == 0.0
    with pytest.raises(MixExpertsError, match='denominator'): get_confidence('consistency', denominator='all')


def test_within_model_ties_are_seeded():
    draws = [tally(np.array([[[0, 1, 2]]]), 3, rng=s).answer.item() for s in range(30)]
    assert set(draws) == {0, 1, 2}
    assert draws == [tally(np.array([[[0, 1, 2]]]), 3, rng=s).answer.item() for s in range(30)]


@pytest.mark.parametrize('bad, msg', [(np.array([[[0.0, 1.0]]]), 'integer answer ids'), (np.array([[[0, 5]]]), 'answer ids in -1..1'),
                                      (np.array([[[-2, 0]]]), 'answer ids in -1..1'), (np.array([0, 1]), 'samples must be')])
def test_tally_rejects_malformed_samples(bad, msg):
    with pytest.raises(MixExpertsError, match=msg): tally(bad, 2)


def test_selection_fast_and_general_paths_agree():
    rs = np.random.default_rng(1)
    sc = rs.integers(0, 6, (2000, 9)) / 5
    sc[rs.random(sc.shape) < 0.15] = -np.inf
    sc[rs.random(sc.shape) < 0.05] = np.nan
    pr = rs.integers(0, 4, 9) / 3
    fast, general = select_model(sc, pr), select_model(sc, np.broadcast_to(pr, sc.shape))
    assert (fast == general).all()
    assert (select_model(np.full((3, 4), -np.inf), pr[:4]) == -1).all()


# --- sources and bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, msg', [
    (dict(answers=np.zeros((2, 3), int)), r'\[questions, models, samples\]'),
    (dict(answers=np.zeros((2, 3, 4))), 'integer answer ids'),
    (dict(answers=np.full((2, 3, 4), 7)), 'answer ids in -1..1'),
    (dict(correct=np.ones((3, 2), bool)), 'correct must be'),
    (dict(correct=np.full((2, 2), 0.5)), 'boolean'),
    (dict(models=['a', 'b']), '2 model names for 3'),
    (dict(models=['a', 'b', 'a']), 'duplicate model names'),
    (dict(present=np.ones((2, 2), bool)), 'present must be'),
    (dict(logprobs=np.zeros((2, 3, 3))), 'logprobs shape'),
    (dict(subjects=['x']), '1 subjects for 2'),
    (dict(answers=np.zeros((0, 3, 4), int)), 'at least one question'),
])
def test_malformed_collected_arrays(kwargs, msg):
    base = dict(answers=np.zeros((2, 3, 4), int), correct=np.array([[True, False], [False, True]]), models=['a', 'b', 'c'])
    base.update(kwargs)
    with pytest.raises(MixExpertsError, match=msg): SampleSet(**base)


def test_k_larger_than_collected_samples():
    with pytest.raises(MixExpertsError, match='only 4 were collected'): MuxSimulation(tiny_set(), k=5, trials=2, tie_breaker='model_order')


def test_draws_without_replacement_are_sub_multisets():
    ss = tiny_set()
    out, _ = ss.draw(3, 20, np.random.default_rng(0))
    for t in range(20):
        for q in range(3):
            for m in range(3):
                pool = list(ss.answers[q, m])
                for v in out[t, q, m]: pool.remove(v)  # raises if drawn more often than collected
    full, _ = ss.draw(4, 1, np.random.default_rng(0))
    assert (np.sort(full[0], -1) == np.sort(ss.answers, -1)).all()


def test_empty_whitespace_and_unextractable_answers_are_counted_misses():
    ss = SampleSet.from_strings([[['#### 7', '   ', ''], ['no number here', None, '#### 7.0']]], ['#### 7'], ['m1', 'm2'],
                                kind='gsm_number')
    assert ss.answers.tolist() == [[[0, -1, -1], [-1, -1, 0]]]
    assert ss.correct_table.tolist() == [[True]]
    sim = MuxSimulation(ss, k=3, trials=2, tie_breaker='model_order', validation=np.array([False]))
    assert np.allclose(sim.score, 1 / 3)  # one right answer out of k=3 for both models
    nobody = SampleSet.from_strings([[[' ', None], ['', 'n/a']]], ['#### 3'], ['m1', 'm2'], kind='gsm_number')
    assert (nobody.answers == -1).all()
    sim = MuxSimulation(nobody, k=2, trials=1, tie_breaker='model_order', validation=np.array([False]))
    assert not sim.mux()[1].any()


def test_ragged_strings_and_gold_count():
    with pytest.raises(MixExpertsError, match='needs 2 models'): SampleSet.from_strings([[['1', '2']]], ['1'], ['a', 'b'])
    with pytest.raises(MixExpertsError, match='gold answers'): SampleSet.from_strings([[['1'], ['2']]], [], ['a', 'b'])


def test_equivalent_answers_share_the_gold_verdict():
    ss = SampleSet.from_strings([[[r'\boxed{\frac{1}{2}}', r'\boxed{0.5}'], [r'\boxed{2}', r'\boxed{1/2}']]], ['0.5'], ['a', 'b'],
                                kind='math_boxed')
    right = np.take_along_axis(ss.correct_table, ss.answers.reshape(1, -1), 1)
    assert right.tolist() == [[True, True, False, True]]


def test_duplicate_model_names_everywhere(arc_small):
    src = ChoiceSource(arc_small, 1.0)
    with pytest.raises(MixExpertsError, match='duplicate'): src.draw(2, 1, np.random.default_rng(0), models=[src.models[0]] * 2)
    sim = MuxSimulation(src, k=2, trials=1)
    with pytest.raises(MixExpertsError, match='duplicate'): sim.mux([src.models[0], src.models[0]])
    with pytest.raises(MixExpertsError, match='unknown model'): sim.mux(['nobody'])
    with pytest.raises(MixExpertsError, match='duplicate'): mux_one([['A'], ['A']], ['x', 'x'], kind='mcq_letter')


def test_model_with_no_validation_questions():
    present = np.ones((3, 3), bool)
    present[:2, 2] = False  # model c answered only question 2, which is in the test half
    val = np.array([True, True, False])
    with pytest.raises(MixExpertsError, match=r"\['c'\] have no validation questions"):
        MuxSimulation(tiny_set(present=present), k=4, trials=2, validation=val)
    sim = MuxSimulation(tiny_set(present=present), k=4, trials=2, validation=val, tie_breaker='model_order')
    assert np.isnan(sim.val_accuracy[2]) and (sim.answer[:, :2, 2] == -1).all()
    with pytest.raises(MixExpertsError, match='validation fraction'): MuxSimulation(tiny_set(), k=4, trials=1, validation=1.0)


def test_bad_simulation_options():
    for kw, msg in [(dict(k=0), 'k must be'), (dict(trials=0), 'trials must be'), (dict(tie_breaker='coin'), 'unknown tie_breaker'),
                    (dict(confidence='entropy'), 'unknown confidence'),
                    (dict(confidence='embedding'), 'needs responses, which an offline simulation does not have'), (dict(validation=np.ones(5, bool)), 'validation mask')]:
        with pytest.raises(MixExpertsError, match=msg): MuxSimulation(tiny_set(), **{'k': 2, 'trials': 1, **kw})
    with pytest.raises(MixExpertsError, match='no per-sample log-probabilities'): MuxSimulation(tiny_set(), k=2, trials=1, confidence='logprob')


def test_npz_round_trip_and_bad_files(tmp_path):
    ss = tiny_set(subjects=['x', 'y', 'x'], logprobs=np.log(np.full((3, 3, 4), 0.5)))
    back = SampleSet.load(ss.save(tmp_path / 's.npz'))
    assert back.models == ss.models and (back.answers == ss.answers).all() and (back.logprobs == ss.logprobs).all()
    (tmp_path / 'junk.npz').write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(DataFormatError, match='not a SampleSet'): SampleSet.load(tmp_path / 'junk.npz')
    z = dict(np.load(tmp_path / 's.npz'))
    z['answers'] = z['answers'][:, :2]  # fewer model columns than names
    np.savez(tmp_path / 'cut.npz', **z)
    with pytest.raises(DataFormatError, match='malformed SampleSet'): SampleSet.load(tmp_path / 'cut.npz')


# --- the simulation ------------------------------------------------------------------------------------------

def test_deterministic_rule_on_collected_samples():
    # with k = all samples, tallies are fixed: q0 a 4/4 (right); q1 a 4/4 (wrong, id 1); q2 b 4/4 (wrong)
    sim = MuxSimulation(tiny_set(), k=4, trials=3, tie_breaker='model_order', validation=np.zeros(3, bool))
    winner, ok = sim.mux()
    assert winner.tolist() == [[0, 0, 1]] * 3 and ok.tolist() == [[True, False, False]] * 3
    # pooled votes for ids (0, 1): q0 (7, 5) right; q1 (4, 6) wrong; q2 (5, 6) wrong
    assert sim.rate(sim.pooled_vote()).tolist() == pytest.approx([1 / 3] * 3)


def test_tie_break_uses_validation_accuracy_only():
    # two unanimous models on every question; a is right on validation only, b on test only
    Q = 40
    ans = np.zeros((Q, 2, 3), int)
    ans[:20, 1] = 1  # b wrong on validation
    ans[20:, 0] = 1  # a wrong on test
    val = np.arange(Q) < 20
    sim = MuxSimulation(SampleSet(ans, np.array([[True, False]] * Q), ['a', 'b']), k=3, trials=2, validation=val)
    assert sim.val_accuracy.tolist() == [1.0, 0.0]
    assert (sim.mux()[0] == 0).all()  # a wins every tie, so the test half is all wrong: no peeking at test
    assert sim.rate(sim.mux()[1], 'test').tolist() == [0.0, 0.0]


def test_tie_vote_is_chosen_on_validation_only():
    # consistent models tie often; the test half of the second set is redrawn, the validation half is the same
    rng = np.random.default_rng(3)
    Q, M, S = 200, 5, 6
    ans = rng.integers(0, 3, (Q, M, S)); ans[:, :, :4] = ans[:, :, :1]
    other = ans.copy(); other[100:] = rng.integers(0, 3, other[100:].shape)
    val, correct = np.arange(Q) < 100, np.array([[True, False, False]] * Q)
    sims = [MuxSimulation(SampleSet(a, correct, list('abcde')), k=S, trials=2, validation=val, tie_breaker='validation_accuracy',
                          tie_vote='auto') for a in (ans, other)]
    assert sims[0].vote_power() == sims[1].vote_power()
    grid = [sims[0].rate(sims[0]._decide(np.arange(M), g)[1], 'validation').mean() for g in TIE_VOTE_GRID]
    assert sims[0].rate(sims[0].mux()[1], 'validation').mean() == max(grid)
    assert len(set(np.round(grid, 9))) > 1  # the grid points differ here, so the choice means something


def test_tie_vote_rules():
    acc = [0.80, 0.78, 0.76]
    assert vote_among_tied([[1, 1, 1]], [[0, 1, 1]], acc, np.inf).tolist() == [0]
    assert vote_among_tied([[1, 1, 1]], [[0, 1, 1]], acc, 8).tolist() == [1]
    assert mux_answer([[1, 1, 1]], [[0, 1, 1]], acc, power=8) == (1, 1)
    with pytest.raises(MixExpertsError, match='needs tie_breaker'):
        MuxSimulation(tiny_set(), k=2, trials=1, tie_breaker='random', tie_vote=4)
    with pytest.raises(MixExpertsError, match='power > 0'):
        MuxSimulation(tiny_set(), k=2, trials=1, tie_vote='sometimes')


def test_peaked_distributions_reproduce_greedy_accuracy(arc_small):
    peaked = ChoiceSource(arc_small, temperature=1e-4)
    sim = MuxSimulation(peaked, k=3, trials=2, seed=1)
    b = sim.models.index(sim.best_model())
    assert np.allclose(sim.answer_correct[..., b], peaked.greedy_correct[None, :, b])
    assert (sim.score[np.isfinite(sim.score)] == 1.0).mean() > 0.99


def test_same_seed_same_numbers_different_seed_different_samples(arc_small):
    a, b, c = (MuxSimulation(arc_small, k=3, trials=2, seed=s) for s in (5, 5, 6))
    assert (a.tally.samples == b.tally.samples).all() and a.report().equals(b.report())
    assert not (a.tally.samples == c.tally.samples).all()


def test_report_relations(arc_small):
    sim = MuxSimulation(arc_small, k=5, trials=4, seed=0)
    r = sim.report()['test']
    assert r['MUX'] <= r["oracle (any model's answer)"] <= r['oracle (any sample)']
    assert r['best single (1 sample)'] <= r['oracle (any sample)']
    assert set(sim.report().columns) == {'validation', 'test', 'test_std'}


def test_split_is_stratified_and_seeded():
    groups = np.repeat(['a', 'b', 'c'], [10, 20, 31])
    v = split_validation(61, groups, seed=2)
    assert [v[groups == g].sum() for g in 'abc'] == [5, 10, 16]
    assert (v == split_validation(61, groups, seed=2)).all() and not (v == split_validation(61, groups, seed=3)).all()


# --- subset search -------------------------------------------------------------------------------------------

def test_bitset_scores_equal_direct_mux(arc_small):
    sim = MuxSimulation(arc_small, k=5, trials=3, seed=0, tie_breaker='random')
    bits = SubsetBits(sim)
    rs = np.random.default_rng(0)
    S = np.array([np.sort(rs.choice(8, 3, replace=False)) for _ in range(6)])
    direct = [sim.rate(sim.mux([sim.models[i] for i in s])[1], 'validation').mean() for s in S]
    assert np.allclose(bits.accuracy(S), direct)


def test_search_is_exhaustive_and_validation_only(arc_small):
    sim = MuxSimulation(arc_small, k=5, trials=3, seed=0)
    res = search_subsets(sim, sizes=(2, 4))
    assert res.n_evaluated == sum(math.comb(8, s) for s in (2, 3, 4)) + 1  # and the full pool
    best = max(sim.rate(sim.mux([sim.models[i] for i in c])[1], 'validation').mean()
               for s in (2, 3, 4, 8) for c in itertools.combinations(range(8), s))
    assert res.validation_accuracy == pytest.approx(best)
    greedy = search_subsets(sim, sizes=(2, 4), method='greedy')
    assert greedy.n_evaluated < res.n_evaluated and greedy.validation_accuracy <= res.validation_accuracy + 1e-12


def test_confacc_running_best_starts_at_minus_infinity():
    # every subset scores below 0 (all models confidently wrong everywhere, nobody knows anything)
    ans = np.ones((6, 3, 3), int)
    sim = MuxSimulation(SampleSet(ans, np.array([[True, False]] * 6), ['a', 'b', 'c']), k=3, trials=1,
                        tie_breaker='model_order', validation=np.ones(6, bool) & (np.arange(6) < 4))
    res = search_subsets(sim, sizes=(2, 3), objective='confacc')
    assert len(res.models) >= 2 and (res.by_size['objective'] <= 0).all()
    with pytest.raises(MixExpertsError, match='objective'): search_subsets(sim, objective='magic')
    with pytest.raises(MixExpertsError, match='needs at least 4 models'): search_subsets(sim, sizes=(4, 5))


# --- one live question ---------------------------------------------------------------------------------------

def test_mux_one():
    d = mux_one([['(A)', 'A', 'Answer: B'], ['C', 'C', 'C']], ['x', 'y'], kind='mcq_letter', n_choices=4, rng=0)
    assert d['model'] == 'y' and d['answer'] == 'C' and d['scores'] == {'x': pytest.approx(2 / 3), 'y': 1.0}
    d = mux_one([['A', 'A'], ['C', 'C']], ['x', 'y'], kind='mcq_letter', priority=[0.1, 0.9])
    assert d['model'] == 'y'
    d = mux_one([['A', 'B'], ['C', 'D']], ['x', 'y'], kind='mcq_letter', confidence='logprob', logprobs=[[-2, -0.1], [-1, -3]])
    assert (d['model'], d['answer']) == ('x', 'B')


# --- command line --------------------------------------------------------------------------------------------

def run_cli(*args):
    "`mixexperts …` in-process, through the real entry point: (exit code, stdout, stderr)."
    return run_captured(list(args))


def test_cli_simulate_json_with_default_loader():
    code, out, _ = run_cli('mux', 'simulate', data_path('lm_eval', 'csqa'), '--k', '3', '--trials', '2', '--subset-search',
                           '--max-size', '3', '--json')
    j = json.loads(out)
    assert code == 0 and {'accuracy', 'best_single_accuracy', 'oracle_accuracy', 'n_questions', 'seconds', 'subset'} <= set(j)
    assert j['n_questions'] == 1221 and 2 <= len(j['subset']) <= 3 and 0 < j['accuracy'] <= j['oracle_accuracy']


@pytest.mark.parametrize('vote', ['inf', 'auto', '4'])
def test_cli_tie_vote_prints_strict_json(arc_small, vote, tmp_path):
    arc_small.save(tmp_path / 'arc_small.parquet')
    strict = lambda s: json.loads(s, parse_constant=lambda c: pytest.fail(f'not JSON: {c}'))
    for action in ('search', 'simulate'):
        extra = ['--subset-search'] if action == 'simulate' else []
        code, out, err = run_cli('mux', action, tmp_path / 'arc_small.parquet', '--k', '3', '--trials', '2', '--max-size', '3',
                                 '--tie-breaker', 'validation_accuracy', '--tie-vote', vote, '--json', *extra)
        assert code == 0, err
        j = strict(out)
        want = {'inf': {None}, '4': {4.0}, 'auto': {None, *TIE_VOTE_GRID[1:]}}[vote]  # 'auto' may keep the plain rule (null)
        if action == 'simulate': assert j['tie_vote_power'] in want
        else: assert all(r.get('tie_vote') is None or r['tie_vote'] > 0 for r in j['best_by_size'].values())


def test_cli_with_a_parquet_matrix_and_npz(tmp_path, arc_small):
    arc_small.save(tmp_path / 'arc_small.parquet')
    code, out, _ = run_cli('mux', 'simulate', tmp_path / 'arc_small.parquet', '--k', '2', '--trials', '2', '--json')
    assert code == 0 and json.loads(out)['n_questions'] == 300 and 'subset' not in json.loads(out)
    tiny_set().save(tmp_path / 't.npz')
    code, out, err = run_cli('mux', 'search', tmp_path / 't.npz', '--k', '4', '--trials', '2', '--tie-breaker', 'model_order',
                             '--validation', '0.4', '--json')
    assert code == 0, err
    assert set(json.loads(out)) >= {'subset', 'validation_accuracy', 'test_accuracy', 'best_by_size'}
    code, _, err = run_cli('mux', 'simulate', tmp_path / 't.npz', '--k', '9')
    assert code == 2 and 'only 4 were collected' in err
    code, _, err = run_cli('mux', 'simulate', tmp_path / 't.npz', '--models', 'a', 'a')
    assert code == 2 and 'duplicate' in err
