"""lm-eval's own CLI evaluates our model through `mixexperts lm-eval`, and the results matrix reads what it wrote."""
import json, subprocess, sys
from pathlib import Path

from mixexperts.results import load_results

EXE = str(Path(sys.executable).parent / 'mixexperts')


def test_lm_eval_cli_with_our_model_and_local_task(tmp_path):
    r = subprocess.run([EXE, 'lm-eval', 'run', '--model', 'mixexperts', '--model_args', 'model=smollm2-135m-instruct,batch_size=8',
                        '--tasks', 'mx_swarm_medqa', '--limit', '6', '--output_path', str(tmp_path), '--log_samples'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    folders = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert [d.name for d in folders] == ['smollm2-135m-instruct']
    rm = load_results(tmp_path, progress=False)
    assert (rm.n_models, rm.n_questions) == (1, 6)
    res = json.loads(next(folders[0].glob('results_*.json')).read_text())
    assert abs(res['results']['mx_swarm_medqa']['acc,none'] - rm.accuracy().iloc[0]) < 1e-12


def test_unknown_lm_eval_model_name_fails(tmp_path):
    r = subprocess.run([EXE, 'lm-eval', 'run', '--model', 'no-such-model', '--tasks', 'mx_swarm_medqa', '--limit', '1'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'no-such-model' in (r.stderr + r.stdout)


def test_lm_eval_cli_evaluates_a_saved_router(tmp_path):
    "A router over two MMLU models, both mapped to the one SmolLM2: lm-eval scores it exactly as SmolLM2 alone."
    import numpy as np
    from mixexperts.core import data_path
    from mixexperts.routers import get_router
    pool = ['Qwen__Qwen2.5-7B-Instruct', 'google__gemma-2-9b-it']
    rm = load_results(data_path('lm_eval', 'mmlu'), progress=False, models=pool)
    folder = get_router('knn', k=5, tau=0.0).fit(rm.subset(np.arange(60))).save(tmp_path / 'router')
    maps = ';'.join(f'{m}:smollm2-135m-instruct' for m in pool)
    for name, margs in [('routed', f'router={folder},route_models={maps},batch_size=8'), ('plain', 'model=smollm2-135m-instruct,batch_size=8')]:
        r = subprocess.run([EXE, 'lm-eval', 'run', '--model', 'mixexperts', '--model_args', margs, '--tasks', 'mx_swarm_medqa',
                            '--limit', '6', '--output_path', str(tmp_path / name), '--log_samples'], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    routed, plain = load_results(tmp_path / 'routed', progress=False), load_results(tmp_path / 'plain', progress=False)
    assert routed.n_questions == plain.n_questions == 6
    np.testing.assert_allclose(routed.logliks, plain.logliks, atol=1e-4)
