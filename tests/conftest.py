"""Shared fixtures: real lm-eval sample lines from the shared data, written into small run folders."""
import gzip, json, os
from pathlib import Path
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

from mixexperts.core import data_path

ARC_MODELS = ['Qwen__Qwen3-4B', 'google__gemma-2-9b-it', 'meta-llama__Llama-3.2-1B-Instruct']
TS = '2025-01-01T00-00-00.000000'


def real_lines(model, benchmark='arc', n=40):
    "The first `n` parsed sample lines of a model's real lm-eval output."
    path = next((data_path('lm_eval', benchmark) / model).glob('samples_*.jsonl.gz'))
    with gzip.open(path, 'rt', encoding='utf-8') as f:
        return [json.loads(next(f)) for _ in range(n)]


def write_run(root, model, task, rows, ts=TS, gz=False, raw=None):
    "Write one samples file as lm-eval names it; `raw` (list of str lines) overrides `rows`."
    d = Path(root) / model
    d.mkdir(parents=True, exist_ok=True)
    name = f'samples_{task}_{ts}.jsonl' + ('.gz' if gz else '')
    text = '\n'.join(raw if raw is not None else [json.dumps(r) for r in rows]) + '\n'
    p = d / name
    if gz:
        with gzip.open(p, 'wt', encoding='utf-8') as f: f.write(text)
    else: p.write_text(text, encoding='utf-8')
    return p


@pytest.fixture
def arc_rows():
    "{model: first 40 real ARC lines} for three models."
    return {m: real_lines(m) for m in ARC_MODELS}


@pytest.fixture
def arc_run(tmp_path, arc_rows):
    "A three-model lm-eval folder with 40 real ARC questions each."
    for m, rows in arc_rows.items(): write_run(tmp_path, m, 'arc_challenge', rows)
    return tmp_path
