"""Wall time of `mixexperts pool eval` with 2 local workers against the same 4 jobs run one after another.

The jobs: the two shipped LMs (SmolLM2-135M-Instruct, Gemma 3 270M; engine hf, float32, one thread per job) x the
two rehearsal tasks made from the shipped data (`pool_arc`, `pool_csqa`: the first N ARC-Challenge / CommonsenseQA
questions). Baseline, in the same run: `--workers 1`, i.e. the jobs one after another as the MoM reference's shell
loop runs them. Both runs write the same files (checked: same names apart from timestamps, identical per-sample acc).

On a machine with C cores and W workers, the ideal ratio is min(W, C, jobs); lm-eval's start-up (imports, task
index) is a large part of each small job, and runs in parallel too.

Usage: python benchmarks/pool_rehearsal.py [--n 8] [--workers 2] [--out DIR]
The last line printed is one JSON object: seconds_parallel, seconds_sequential, ratio, jobs, workers, cpus, n.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

from mixexperts.pool import rehearsal_tasks
from mixexperts.results import load_results

EXE = str(Path(sys.executable).parent / 'mixexperts')
POOL = "- {model: smollm2-135m-instruct, dtype: float32}\n- {model: gemma3-270m, dtype: float32}\n"


def run(d, out, *extra):
    tasks = rehearsal_tasks(d / 'tasks', n=ARGS.n)
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'MIXEXPERTS_PROGRESS': 'off'}
    t0 = time.perf_counter()
    r = subprocess.run([EXE, 'pool', 'eval', str(d / 'pool.yaml'), '--tasks', f"{tasks['pool_arc']},{tasks['pool_csqa']}",
                        '--threads', '1', '-o', str(out), *extra], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0: sys.exit(f"pool eval failed:\n{r.stdout}\n{r.stderr[-3000:]}")
    return dt


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=8, help='questions per task')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--out', default=None, help='working folder (default: a temporary one, removed)')
    ARGS = ap.parse_args()
    d = Path(ARGS.out or tempfile.mkdtemp(prefix='pool_rehearsal_'))
    d.mkdir(parents=True, exist_ok=True)
    (d / 'pool.yaml').write_text(POOL)
    for o in ('parallel', 'sequential'): shutil.rmtree(d / o, ignore_errors=True)
    ids = ','.join(str(i) for i in range(ARGS.workers))
    par = run(d, d / 'parallel', '--gpus', ids, '--workers', str(ARGS.workers))
    print(f"pool eval, {ARGS.workers} workers (pretend GPUs {ids}): {par:.1f} s for 4 jobs")
    seq = run(d, d / 'sequential', '--workers', '1')
    print(f"baseline, one job after another (--workers 1): {seq:.1f} s")
    same = True
    for b in ('pool_arc', 'pool_csqa'):
        a, s = load_results(d / 'parallel' / b, progress=False), load_results(d / 'sequential' / b, progress=False)
        same &= a.models == s.models and np.array_equal(a.correct, s.correct)
    print(f"same per-sample acc: {same}; ratio sequential / parallel = {seq / par:.2f}")
    out = dict(seconds_parallel=round(par, 1), seconds_sequential=round(seq, 1), ratio=round(seq / par, 2), jobs=4,
               workers=ARGS.workers, cpus=os.cpu_count(), n=ARGS.n, same_acc=bool(same),
               baseline='the same jobs one after another (--workers 1)')
    if not ARGS.out: shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
