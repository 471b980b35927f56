"""Bad and unusual lm-eval input: every case gives one clear error naming file and line, or a counted warning."""
import copy, gzip, json, warnings
import numpy as np
import pytest

from mixexperts.core import DataFormatError, DataWarning, MixExpertsError, DataNotFoundError
from mixexperts.results import load_results, read_samples, ResultsMatrix
from conftest import ARC_MODELS, TS, write_run

M0, M1, M2 = ARC_MODELS


def load(root, **kw): return load_results(root, progress=False, n_jobs=1, **kw)


def test_small_real_run_loads(arc_run):
    rm = load(arc_run)
    assert (rm.n_questions, rm.n_models) == (40, 3)
    assert rm.questions['gold'].ge(0).all()


@pytest.mark.parametrize('gz', [False, True])
def test_truncated_or_non_json_line(tmp_path, arc_rows, gz):
    raw = [json.dumps(r) for r in arc_rows[M0]]
    raw[6] = raw[6][:37]
    p = write_run(tmp_path, M0, 'arc_challenge', None, raw=raw, gz=gz)
    with pytest.raises(DataFormatError, match=r':7: line is not valid JSON') as e: load(tmp_path)
    assert str(p) in str(e.value)


def test_truncated_gzip_stream(tmp_path, arc_rows):
    p = write_run(tmp_path, M0, 'arc_challenge', arc_rows[M0], gz=True)
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(DataFormatError, match='truncated or corrupt') as e: load(tmp_path)
    assert p.name in str(e.value)


@pytest.mark.parametrize('key', ['doc_id', 'filtered_resps', 'acc_norm'])
def test_missing_key(tmp_path, arc_rows, key):
    rows = copy.deepcopy(arc_rows[M0]); del rows[3][key]
    write_run(tmp_path, M0, 'arc_challenge', rows)
    with pytest.raises(DataFormatError, match=rf":4: missing key '{key}'"): load(tmp_path)


@pytest.mark.parametrize('bad, msg', [
    ({'a': 1}, 'non-empty list'),
    ([], 'non-empty list'),
    ([-1.0, -2.0], 'unexpected shape'),
    ([['x', 'False'], ['-1', 'True']], 'pair per choice'),
    ([[], ['-1', 'True']], 'pair per choice'),
    ([['-1.5', 'False'], ['nan', 'True']], 'non-finite'),
    ([['-1.5', 'False'], ['-inf', 'True']], 'non-finite'),
    ([[float('inf'), 'False'], ['-1', 'True']], 'non-finite'),
])
def test_bad_filtered_resps(tmp_path, arc_rows, bad, msg):
    rows = copy.deepcopy(arc_rows[M0]); rows[10]['filtered_resps'] = bad
    p = write_run(tmp_path, M0, 'arc_challenge', rows)
    with pytest.raises(DataFormatError, match=msg) as e: read_samples(p)
    assert f'{p}:11:' in str(e.value)


def test_non_numeric_metric_and_doc_id(tmp_path, arc_rows):
    rows = copy.deepcopy(arc_rows[M0]); rows[1]['acc_norm'] = 'yes'
    with pytest.raises(DataFormatError, match=":2: acc_norm must be a number"): read_samples(write_run(tmp_path, M0, 'arc_challenge', rows))
    rows = copy.deepcopy(arc_rows[M0]); rows[2]['doc_id'] = '2'
    with pytest.raises(DataFormatError, match=":3: doc_id must be an integer"): read_samples(write_run(tmp_path, M0, 'arc_challenge', rows))


def test_skip_policy_counts_and_marks_missing(tmp_path, arc_rows):
    for m, rows in arc_rows.items():
        rows = copy.deepcopy(rows)
        if m == M1: rows[5]['filtered_resps'] = [['nan', 'False']] * 4
        write_run(tmp_path, m, 'arc_challenge', rows)
    with pytest.warns(DataWarning) as w: rm = load(tmp_path, on_bad_line='skip')
    msgs = ' | '.join(str(x.message) for x in w)
    assert 'skipped 1 bad line' in msgs and 'first at line 6' in msgs
    assert '1 question answers missing' in msgs and M1 in msgs
    assert rm.n_questions == 39 and rm.meta['skipped_lines'] == 1


def test_model_folder_without_samples(arc_run):
    (arc_run / 'empty__model').mkdir()
    (arc_run / 'empty__model' / f'results_{TS}.json').write_text('{}')
    with pytest.raises(DataFormatError, match='empty__model: model folder holds no samples'): load(arc_run)


def test_empty_and_absent_directories(tmp_path):
    with pytest.raises(DataFormatError, match='no lm-eval model folders'): load(tmp_path)
    with pytest.raises(DataNotFoundError, match='is not a folder'): load(tmp_path / 'nope')


def test_doc_hash_disagreement_names_both_files(tmp_path, arc_rows):
    for m, rows in arc_rows.items():
        rows = copy.deepcopy(rows)
        if m == M2: rows[12]['doc_hash'] = '0' * 64
        write_run(tmp_path, m, 'arc_challenge', rows)
    with pytest.raises(DataFormatError, match='doc_hash') as e: load(tmp_path)
    text = str(e.value)
    assert f'{M2}/samples_arc_challenge_{TS}.jsonl:13:' in text and f'{M0}/samples_arc_challenge_{TS}.jsonl:13' in text


def test_option_count_disagreement(tmp_path, arc_rows):
    for m, rows in arc_rows.items():
        rows = copy.deepcopy(rows)
        if m == M1: rows[0]['filtered_resps'] = rows[0]['filtered_resps'][:3]
        write_run(tmp_path, m, 'arc_challenge', rows)
    with pytest.raises(DataFormatError, match=r':1: number of options 3 differs from 4'): load(tmp_path)


def test_duplicate_question_in_one_file(tmp_path, arc_rows):
    rows = copy.deepcopy(arc_rows[M0]); rows[20]['doc_id'] = rows[3]['doc_id']
    write_run(tmp_path, M0, 'arc_challenge', rows)
    with pytest.raises(DataFormatError, match=r'doc_id 3 appears twice \(lines 4 and 21\)'): load(tmp_path)


def test_missing_question_policies(tmp_path, arc_rows):
    for m, rows in arc_rows.items(): write_run(tmp_path, m, 'arc_challenge', rows[:35] if m == M2 else rows)
    with pytest.warns(DataWarning, match=rf'5 question answers missing — {M2}: 5 in 1 task'):
        rm = load(tmp_path)
    assert rm.n_questions == 35 and rm.meta['n_missing_questions'] == 5
    with pytest.warns(DataWarning, match='kept them as NaN'): rk = load(tmp_path, missing='keep')
    assert rk.n_questions == 40 and np.isnan(rk.correct[35:, 2]).all() and not np.isnan(rk.correct[:, :2]).any()
    assert (rk.pred[35:, 2] == -1).all()
    with pytest.raises(MixExpertsError, match='lack questions'): load(tmp_path, missing='error')


def test_keep_policy_takes_docs_from_a_model_that_has_them(tmp_path, arc_rows):
    # the first model (the usual source of question texts) lacks the last questions
    for m, rows in arc_rows.items(): write_run(tmp_path, m, 'arc_challenge', rows[:30] if m == M0 else rows)
    with pytest.warns(DataWarning): rk = load(tmp_path, missing='keep')
    assert rk.questions['question'].str.len().gt(0).all() and rk.questions['gold'].ge(0).all()


def test_newest_oldest_and_named_runs(tmp_path, arc_rows):
    old, new = '2024-01-01T00-00-00.000000', '2025-06-01T00-00-00.000000'
    for m, rows in arc_rows.items():
        write_run(tmp_path, m, 'arc_challenge', rows, ts=old)
        flipped = copy.deepcopy(rows)
        for r in flipped: r['acc_norm'] = 1.0 - r['acc_norm']  # a distinguishable second run
        write_run(tmp_path, m, 'arc_challenge', flipped, ts=new)
    a_old = load(tmp_path, run='oldest').correct
    with pytest.warns(DataWarning, match='disagrees with arg-max'):  # the flipped run is inconsistent on purpose
        a_new = load(tmp_path).correct
    assert np.array_equal(a_new, 1 - a_old)
    assert np.array_equal(load(tmp_path, run=old).correct, a_old)
    with pytest.raises(MixExpertsError, match='has no run'): load(tmp_path, run='2020-01-01T00-00-00.000000')


def test_unknown_models(arc_run):
    with pytest.raises(MixExpertsError, match="no model folder.*known"): load(arc_run, models=['x__y'])
    with pytest.raises(MixExpertsError, match='cannot exclude'): load(arc_run, exclude_models=['x__y'])
    assert load(arc_run, exclude_models=[M1]).models == [M0, M2]


def test_not_our_parquet(tmp_path):
    import pandas as pd
    p = tmp_path / 'other.parquet'
    pd.DataFrame({'a': [1]}).to_parquet(p)
    with pytest.raises(DataFormatError, match='not written by ResultsMatrix.save'): ResultsMatrix.load(p)
    (tmp_path / 'junk.parquet').write_bytes(b'not parquet')
    with pytest.raises(DataFormatError, match='not a readable parquet'): ResultsMatrix.load(tmp_path / 'junk.parquet')


def test_generative_task_with_two_filters(tmp_path):
    "A GSM8K-style task: text responses, exact_match, two filters per question."
    def rows(model_offset):
        out = []
        for i in range(6):
            for filt in ('strict-match', 'flexible-extract'):
                out.append({'doc_id': i, 'doc': {'question': f'What is {i}+{i}?', 'answer': f'#### {2*i}'},
                            'target': f'#### {2*i}', 'filtered_resps': [str(2 * i + (i + model_offset) % 2)],
                            'filter': filt, 'metrics': ['exact_match'], 'doc_hash': f'h{i}',
                            'exact_match': float((i + model_offset) % 2 == 0)})
        return out
    write_run(tmp_path, 'a__m', 'gsm8k', rows(0)); write_run(tmp_path, 'b__m', 'gsm8k', rows(1))
    with pytest.warns(DataWarning, match="several filters"):
        rm = load(tmp_path)
    assert (rm.n_questions, rm.n_models) == (6, 2)
    assert rm.meta['filters'] == {'gsm8k': 'strict-match'} and rm.meta['metrics'] == {'gsm8k': 'exact_match'}
    assert rm.oracle_accuracy() == 1.0 and rm.accuracy().tolist() == [0.5, 0.5]
    assert (rm.pred == -1).all() and rm.questions['text'].iloc[2] == 'What is 2+2?'
    rf = load(tmp_path, filter='flexible-extract')
    assert rf.meta['filters'] == {'gsm8k': 'flexible-extract'}
    with pytest.raises(DataFormatError, match="no lines with filter 'nope'"): load(tmp_path, filter='nope')


def test_hellaswag_style_task_without_labels(tmp_path, arc_rows):
    "Options under `endings`, an integer target, acc_norm as the standard metric: no code change needed."
    for m, rows in arc_rows.items():
        hs = []
        for r in rows:
            r = copy.deepcopy(r)
            r['doc'] = {'ctx': r['doc']['question'], 'endings': r['doc']['choices']['text'], 'label': r['target']}
            r['target'] = int(r['target'])
            hs.append(r)
        write_run(tmp_path, m, 'hellaswag', hs, gz=True)
    rm = load(tmp_path)
    assert rm.meta['metrics'] == {'hellaswag': 'acc_norm'}
    g = rm.questions['gold'].to_numpy()
    assert ((rm.pred == g[:, None]) == (rm.correct == 1)).all()
    assert rm.questions['text'].iloc[0].split('\n')[1].startswith('A. ')
