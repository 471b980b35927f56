"""Routers and their evaluation: the registry, bad input, save/load, no peeking at held-out questions, costs and curves, k-fold."""
import json, warnings
from pathlib import Path
import numpy as np
import pytest

from mixexperts.core import DataWarning, MixExpertsError, data_path
from mixexperts.results import load_results
from mixexperts.embeddings import EmbeddingStore, check_texts, embed_texts, encoder_key
from mixexperts.routers import ROUTERS, Router, cost_curve, get_router, model_costs, parse_size, pick, routed_correct
from mixexperts.routing_eval import CVResult, aiq, apgr, cpt, cross_validate, kfold_splits, two_model_curve, upper_hull

FAST = ['best_single', 'random', 'subject', 'subject_clf', 'query_label', 'knn', 'logistic', 'mlp', 'mf', 'tfidf', 'factor', 'blend', 'cost_aware']
QUICK = {'query_label': {'weight_decay': 1e-4, 'steps': 60}, 'knn': {'k': 10, 'tau': 0.0}, 'logistic': {'weight_decay': 1e-4, 'steps': 60},
         'mlp': {'weight_decay': 1e-4, 'steps': 60, 'hidden': 16}, 'mf': {'weight_decay': 1e-5, 'steps': 60, 'dim': 8}, 'factor': {'steps': 60},
         'blend': {'members': ['subject', {'router': 'knn', 'k': 10, 'tau': 0.0}], 'weights': [0.5, 0.5]},
         'cost_aware': {'base': {'router': 'knn', 'k': 10, 'tau': 0.0}, 'lam': 0.1}}


@pytest.fixture(scope='module')
def mmlu_small():
    "120 real MMLU questions of three subjects, the five strongest of the 25-model pool."
    rm = load_results(data_path('lm_eval', 'mmlu'), progress=False, models=[
        'Qwen__Qwen2.5-7B-Instruct', 'google__gemma-2-9b-it', 'microsoft__Phi-3-mini-4k-instruct', 'Qwen__Qwen3-4B',
        'meta-llama__Llama-3.1-8B-Instruct'])
    rows = np.flatnonzero(rm.questions['subject'].isin(['virology', 'marketing', 'high_school_mathematics']).to_numpy())
    return rm.subset(np.sort(np.random.default_rng(1).choice(rows, 120, replace=False)))


@pytest.fixture(scope='module')
def split(mmlu_small):
    return kfold_splits(mmlu_small, 4, seed=0)[0]


def fitted(name, rm, rows):
    return get_router(name, **QUICK.get(name, {})).fit(rm, rows)


# --- registry and bad input ----------------------------------------------------------------------------------

def test_registry_names_and_unknown_router():
    assert set(FAST) <= set(ROUTERS) and {'oracle', 'orchestrator', 'mom'} <= set(ROUTERS.names())
    with pytest.raises(MixExpertsError, match="unknown router 'gpt-router'; known: best_single"): get_router('gpt-router')
    with pytest.raises(MixExpertsError, match=r"no parameter\(s\) \['kk'\]"): get_router('knn', kk=3)


@pytest.mark.parametrize('texts, msg', [(['ok', ''], r'empty query text at position\(s\) \[1\]'), (['  \n', 'ok'], r'position\(s\) \[0\]'),
                                        ('just one string', 'wrap a single query'), (['ok', 3], 'must be strings')])
def test_bad_query_batches(texts, msg, mmlu_small, split):
    with pytest.raises(MixExpertsError, match=msg): check_texts(texts)
    r = fitted('best_single', mmlu_small, split[0])
    with pytest.raises(MixExpertsError, match=msg): r.route(texts)


def test_empty_strings_never_reach_the_encoder(monkeypatch):
    import mixexperts.embeddings as embeddings
    monkeypatch.setattr(embeddings, 'get_encoder', lambda *a, **k: pytest.fail('encoder built for a bad batch'))
    with pytest.raises(MixExpertsError, match='empty query text'): embed_texts(['a question', ''])


def test_single_class_labels_are_refused(mmlu_small):
    only = mmlu_small.select(mmlu_small.models[:2])
    rows = np.flatnonzero((only.correct[:, 0] == 1) & (only.correct[:, 1] == 0))
    with pytest.raises(MixExpertsError, match='a classifier needs at least two classes'):
        get_router('query_label', weight_decay=1e-4).fit(only, rows)
    from mixexperts.orchestrator import orchestrator_targets
    with pytest.raises(MixExpertsError, match='a classifier needs at least two classes'): orchestrator_targets(only.subset(rows), 'single')


def test_saved_router_with_other_models_is_refused(mmlu_small, split, tmp_path):
    r = fitted('knn', mmlu_small, split[0])
    back = Router.load(r.save(tmp_path / 'knn'))
    fewer = mmlu_small.select(mmlu_small.models[:4])
    with pytest.raises(MixExpertsError, match=rf"the matrix lacks \['{mmlu_small.models[4]}'\]"): back.route_matrix(fewer)
    with pytest.raises(MixExpertsError, match=rf"the router lacks \['{fewer.models[3]}'\]"):
        fitted('knn', fewer.select(fewer.models[:3]), split[0]).route_matrix(fewer)
    reordered = mmlu_small.select(mmlu_small.models[::-1])  # same models, other order: aligned, not refused
    assert np.array_equal(back.route_matrix(reordered).index, r.route_matrix(mmlu_small).index)


def test_load_rejects_broken_folders(mmlu_small, split, tmp_path):
    r = fitted('logistic', mmlu_small, split[0])
    d = r.save(tmp_path / 'lr')
    with pytest.raises(MixExpertsError, match='already exists'): r.save(d)
    (d / 'weights.safetensors').unlink()
    with pytest.raises(MixExpertsError, match='weights.safetensors does not exist'): Router.load(d)
    (tmp_path / 'bad').mkdir(); (tmp_path / 'bad' / 'router.json').write_text('{"params": {}}')
    with pytest.raises(MixExpertsError, match="no 'router' key"): Router.load(tmp_path / 'bad')
    (tmp_path / 'bad' / 'router.json').write_text('{"router": "teleport", "params": {}, "models": []}')
    with pytest.raises(MixExpertsError, match="unknown router 'teleport'"): Router.load(tmp_path / 'bad')


def test_unfitted_and_oracle_misuse(mmlu_small, split):
    with pytest.raises(MixExpertsError, match='not fitted'): get_router('knn').route(['q'])
    with pytest.raises(MixExpertsError, match='routes only the questions of a results matrix'):
        fitted('oracle', mmlu_small, split[0]).route(['q'])
    with pytest.raises(MixExpertsError, match='at least 2 training questions'): get_router('best_single').fit(mmlu_small, [0])
    with pytest.raises(MixExpertsError, match='cannot choose'): get_router('knn', k='auto', tau=0.0, encoder='auto').fit(mmlu_small, split[0])


# --- every router: fit, route, save, load ----------------------------------------------------------------------

@pytest.mark.parametrize('name', FAST)
def test_round_trip_reproduces_scores(name, mmlu_small, split, tmp_path):
    tr, te = split
    test = mmlu_small.subset(te)
    r = fitted(name, mmlu_small, tr)
    ro = r.route_matrix(test)
    assert ro.scores.shape == (len(te), 5) and len(ro.chosen) == len(te)
    back = Router.load(r.save(tmp_path / name))
    assert back.models == r.models and back.params == json.loads(json.dumps(r.params))
    assert np.allclose(back.route_matrix(test).scores, ro.scores, atol=1e-6, equal_nan=True)
    assert not list(tmp_path.rglob('*.pkl')) and not list(tmp_path.rglob('*.pickle'))


def test_fit_never_reads_held_out_rows(mmlu_small, split):
    "Scrambling the correctness of the held-out questions changes nothing a router learns, 'auto' tuning included."
    tr, te = split
    other = mmlu_small.subset(np.arange(mmlu_small.n_questions))
    other.correct = mmlu_small.correct.copy()
    other.correct[te] = 1 - other.correct[te]
    for name, params in [('knn', {}), ('tfidf', {}), ('factor', {}), ('blend', {'members': ['subject', {'router': 'knn', 'k': 10, 'tau': 0.0}]}),
                         ('cost_aware', {'base': {'router': 'knn', 'k': 10, 'tau': 0.0}})]:
        a = get_router(name, **params).fit(mmlu_small, tr)
        b = get_router(name, **params).fit(other, tr)
        assert a.params == b.params and a.meta['tuned'] == b.meta['tuned']
        test = mmlu_small.subset(te)
        assert np.array_equal(a.route_matrix(test).scores, b.route_matrix(test).scores)


def test_tfidf_odd_correctness_columns(mmlu_small, split):
    "One-class, nearly unknown, unknown and partial-credit columns: smoothed constants, never-chosen NaN, soft targets."
    tr, te = split
    rm = mmlu_small.subset(np.arange(mmlu_small.n_questions))
    Y = mmlu_small.correct.copy()
    Y[:, 0] = 1.0                                   # right on every question
    Y[:, 1] = np.nan; Y[tr[:3], 1] = 1.0            # known on three training questions only, all right
    Y[:, 2] = np.nan                                # never answered
    Y[:, 3] = np.where(Y[:, 3] > 0.5, 0.75, 0.25)  # partial credit
    rm.correct = Y
    r = get_router('tfidf', C=0.1).fit(rm, tr)
    s = r.route_matrix(rm.subset(te)).scores
    assert np.allclose(s[:, 0], (len(tr) + 1) / (len(tr) + 2))  # smoothed accuracy, a constant
    assert np.allclose(s[:, 1], 4 / 5)                         # (3 + 1) / (3 + 2): three lucky answers do not win everything
    assert np.isnan(s[:, 2]).all() and (r.route_matrix(rm.subset(te)).index != 2).all()
    assert 0.2 < s[:, 3].min() and s[:, 3].max() < 0.8 and s[:, 3].std() > 0  # soft targets stay inside (0.25, 0.75)-ish


def test_subject_table_and_known_subjects(mmlu_small, split):
    tr, te = split
    r = fitted('subject', mmlu_small, tr)
    tab = mmlu_small.subset(tr).subject_table().drop(columns='n')
    assert [r.models[j] for j in r.table.argmax(1)] == tab.idxmax(axis=1).tolist()
    test = mmlu_small.subset(te)
    known = r.route(test.questions['text'].tolist(), test.questions['subject'].tolist())
    best = dict(zip(tab.index, np.array(r.models)[pick(tab[r.models].to_numpy(), r.prior)]))  # ties: the better model overall
    assert known.chosen == [best[s] for s in test.questions['subject']]


def test_pick_breaks_ties_by_training_accuracy(mmlu_small, split):
    r = fitted('knn', mmlu_small, split[0])
    r.correct[:] = 1.0  # every model looks equally good: the best training model must win
    assert set(r.route(['Which virus causes measles?']).chosen) == {mmlu_small.subset(split[0]).best_single()[0]}


# --- embeddings ------------------------------------------------------------------------------------------------

def test_embeddings_match_sentence_transformers_and_cache(mmlu_small, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer
    from mixexperts.models import resolve_model
    texts = mmlu_small.questions['text'].tolist()[:5]
    st = SentenceTransformer(str(resolve_model('all-minilm-l6-v2')), device='cpu').encode(texts, normalize_embeddings=True)
    assert np.allclose(embed_texts(texts, cache=False), st, atol=1e-5)
    store = EmbeddingStore(tmp_path / 'store')
    h = np.arange(64, dtype=np.uint8).reshape(2, 32)
    store.put(h, np.ones((2, 3), np.float32))
    (tmp_path / 'store' / 'chunk-broken.safetensors').write_bytes(b'not a safetensors file')
    with pytest.warns(DataWarning, match='unreadable embedding cache chunk'): again = EmbeddingStore(tmp_path / 'store')
    assert again.lookup(np.concatenate([h, np.zeros((1, 32), np.uint8)])).tolist() == [0, 1, -1]
    assert encoder_key().startswith('all-minilm-l6-v2-256-')


# --- costs and curves ------------------------------------------------------------------------------------------

def test_sizes_and_costs():
    assert parse_size('meta-llama__Llama-3.2-1B-Instruct') == 1 and parse_size('gemma3-270m') == pytest.approx(0.27)
    assert parse_size('Qwen2.5') is None and parse_size('mistralai__Mixtral-8x22B') == 176
    assert model_costs(['microsoft__Phi-3-mini-4k-instruct', 'a-7b']).tolist() == [3.8, 7.0]
    with pytest.raises(MixExpertsError, match=r"no cost for model\(s\) \['x__mystery'\]"): model_costs(['x__mystery', 'a-7b'])
    c = cost_curve(np.array([[0.9, 0.6], [0.2, 0.8]]), np.array([[1, 0], [0, 1.]]), np.array([10., 1.]), lams=[0, np.inf])
    assert c['accuracy'].tolist() == [1.0, 0.5] and c['cost'].tolist() == [5.5, 1.0]


def test_aiq_and_two_model_metrics():
    assert aiq([1, 3], [0.5, 0.7], 1, 3) == pytest.approx(0.6, abs=1e-6)
    hc, ha = upper_hull([1, 2, 3], [0.5, 0.9, 0.8])
    assert hc.tolist() == [1, 2] and ha.tolist() == [0.5, 0.9]
    s, w = np.array([1, 1, 1, 0.]), np.array([0, 1, 0, 1.])
    perfect = two_model_curve(s - w, s, w, grid=5)
    assert perfect['pgr'].iloc[-1] == pytest.approx(1) and cpt(perfect, 1.0) == pytest.approx(0.25)
    assert apgr(perfect) > apgr(two_model_curve(w - s, s, w, grid=5))


def test_cross_validate_baselines(mmlu_small):
    res = cross_validate(mmlu_small, ['best_single', 'oracle', {'router': 'knn', 'k': 10, 'tau': 0.0}], folds=4, progress=False)
    t = res.table()
    assert t.loc['best_single', 'accuracy'] == pytest.approx(res.baselines['best_single_accuracy'].mean())
    assert t.loc['oracle', 'accuracy'] == pytest.approx(res.baselines['oracle_accuracy'].mean())
    assert t.loc['best_single', 'cost_fraction'] == pytest.approx(1.0)
    assert (res.picks['knn'] >= 0).all()
    s = json.loads(json.dumps(res.summary()))
    assert s['n_questions'] == s['n_test'] == 120 and {'accuracy', 'cost_fraction'} <= set(s['routers']['knn'])
    with pytest.raises(MixExpertsError, match='folds must be'): kfold_splits(mmlu_small, 1)
