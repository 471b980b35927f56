"""The `mixexperts` console script, run as a user runs it, on the shared lm-eval outputs."""
import json, subprocess, sys
from pathlib import Path
import pytest

from mixexperts.core import data_path

EXE = str(Path(sys.executable).parent / 'mixexperts')


def mx(*args, check=True):
    r = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0: raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r


@pytest.fixture(scope='module')
def mmlu_parquet(tmp_path_factory):
    out = tmp_path_factory.mktemp('mmlu') / 'mmlu.parquet'
    mx('results', 'build', data_path('lm_eval', 'mmlu'), '-o', out)
    return out


def test_mmlu_summary_json_numbers():
    s = json.loads(mx('results', 'summary', data_path('lm_eval', 'mmlu'), '--json').stdout)
    assert (s['n_models'], s['n_questions']) == (31, 12508)
    assert s['best_model'] == 'Qwen__Qwen2.5-14B-Instruct'
    assert round(s['best_accuracy'], 4) == 0.8141
    assert round(s['oracle_accuracy'], 4) == 0.9905
    assert 0 <= s['none_correct_fraction'] < 0.02


@pytest.mark.parametrize('bench, n_models, n_questions', [('arc', 27, 1172), ('csqa', 27, 1221)])
def test_other_benchmarks(bench, n_models, n_questions):
    s = json.loads(mx('results', 'summary', data_path('lm_eval', bench), '--json').stdout)
    assert (s['n_models'], s['n_questions']) == (n_models, n_questions)
    assert 0 < s['best_accuracy'] <= s['oracle_accuracy'] <= 1


def test_parquet_round_trip_gives_the_same_summary(mmlu_parquet):
    a = json.loads(mx('results', 'summary', mmlu_parquet, '--json').stdout)
    assert (a['n_models'], a['n_questions'], a['best_model']) == (31, 12508, 'Qwen__Qwen2.5-14B-Instruct')
    assert round(a['oracle_accuracy'], 4) == 0.9905


def test_labels_for_a_model_subset(mmlu_parquet, tmp_path):
    pool = ['Qwen__Qwen3-4B', 'google__gemma-2-9b-it', 'meta-llama__Llama-3.1-8B-Instruct']
    out = tmp_path / 'labels.jsonl'
    r = mx('results', 'labels', mmlu_parquet, '-o', out, '--models', *pool)
    rows = [json.loads(l) for l in out.open(encoding='utf-8')]
    assert {r['label'] for r in rows} == set(pool)
    assert all(r['dataset'] == 'mmlu' and r['question'] for r in rows)
    dropped = 12508 - len(rows)
    assert f'{dropped} questions with no correct model dropped' in r.stdout and 0 < dropped < 12508
    again = mx('results', 'labels', mmlu_parquet, '-o', out, '--models', *pool, check=False)
    assert again.returncode == 2 and 'already exists' in again.stderr
    mx('results', 'labels', mmlu_parquet, '-o', out, '--models', *pool, '--force', '--none', 'none')
    assert sum(1 for _ in out.open(encoding='utf-8')) == 12508


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    r = mx('results', 'summary', tmp_path, check=False)
    assert r.returncode == 2 and r.stderr.startswith('error: ') and 'Traceback' not in r.stderr
    r = mx('results', 'summary', data_path('lm_eval', 'arc'), '--models', 'no__model', check=False)
    assert r.returncode == 2 and 'no__model' in r.stderr


def test_version_and_help():
    assert mx('--version').stdout.startswith('mixexperts ')
    assert 'summary' in mx('results', '--help').stdout
    assert all(a in mx('mux', '--help').stdout for a in ('simulate', 'search', 'run'))


def test_mux_run_missing_config_names_the_file(tmp_path):
    r = mx('mux', 'run', '--config', tmp_path / 'nope.yaml', check=False)
    assert r.returncode == 2 and 'nope.yaml' in r.stderr and 'Traceback' not in r.stderr
