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
