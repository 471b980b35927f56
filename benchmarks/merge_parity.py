"""Parity and cost of our checkpoint merges against mergekit 0.1.5, on three real SmolLM2-135M experts.

The experts are the default LoRA experts of `mixexperts.experts.make_experts` (GSM8K solutions, MedMCQA, MMLU;
trained once and cached), written as full fp32 models (base + ΔW). mergekit lives in its own virtual environment
(its pins clash with ours), created on first use under the mixexperts cache: torch==2.13.0 first (the local CPU
wheel from /opt/wheels), then mergekit==0.1.5.

Both tools run the same YAML configs — linear, task_arithmetic, TIES and Model Breadcrumbs (per-model gamma 0.01,
0 and 0.05, rescale: true) with every parameter written out (weights, density, gamma, normalize, lambda, rescale,
dtype float32); breadcrumbs_ties too when asked for — each as a fresh process (mergekit through its `mergekit-yaml`
command, ours through `merge_from_config`), timed by wall clock. Each runs under a small launcher (a bare
interpreter that forks, execs the command and wait4s it), so the peak RSS reported is the command's own: started
straight from this multi-GB process, a child's ru_maxrss would begin at this process's high-water mark (see
`run_measured`). A control child that touches 512 MiB must read within 10 % of that, or the benchmark stops. Runs
alternate between the tools; the reported time of a (tool, method) is the fastest of `--repeats`, its RSS the
largest. The outputs are compared tensor by tensor in fp64.

DARE is random, so its outputs cannot match; we compare statistics instead, on a one-expert merge where they can
be read off the output: the fraction of the task vector kept and the rescale factor of kept entries (ours: 1/density
exactly; mergekit: an l1-norm match per tensor, ≈ 1/density).

Usage: python benchmarks/merge_parity.py [--repeats 2] [--venv DIR] [--methods linear task_arithmetic ties breadcrumbs]
The last line printed is one JSON object: max_abs_diff (over the deterministic methods), time_ratio and rss_ratio
(ours / mergekit, summed time over the methods and largest peak RSS), per-method figures, the RSS control and DARE statistics.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import torch
import yaml

from mixexperts.core import cache_dir, read_json
from mixexperts.models import resolve_model
from mixexperts.params import load_params, max_abs_diff, check_aligned
from mixexperts.experts import expert_checkpoints, make_experts, EXPERT_DEFAULTS

MERGEKIT = 'mergekit==0.1.5'
TORCH = 'torch==2.13.0'
DOMAINS = ('gsm8k', 'medmcqa', 'mmlu')


def mergekit_venv(root: Path) -> Path:
    "The mergekit-yaml command of a venv with mergekit 0.1.5, created on first use."
    exe = root / 'bin' / 'mergekit-yaml'
    if exe.exists(): return exe
    wheels = ['--find-links', '/opt/wheels'] if Path('/opt/wheels').is_dir() else []
    print(f'creating {root} with {TORCH} and {MERGEKIT} ...', flush=True)
    subprocess.run([sys.executable, '-m', 'venv', str(root)], check=True)
    pip = [str(root / 'bin' / 'python'), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', *wheels]
    subprocess.run([*pip, TORCH], check=True)   # first, so mergekit's torch requirement is already met by the CPU wheel
    subprocess.run([*pip, MERGEKIT], check=True)
    return exe


# A child's ru_maxrss starts from the high-water mark of the memory image it was forked from: Linux copies the
# parent's hiwater_rss into the child at fork and folds it into the child's maxrss at exec. Measured straight from
# this process (which holds torch, the experts and the DARE checkpoints, 2–4 GB), every tool reads this process's
# own peak. So each command runs under a small launcher — a bare interpreter (-S -E: no site, no imports beyond
# os, time), ~10 MiB — that forks, execs the command, wait4s it and writes the child's wall time and ru_maxrss to a
# file; the child inherits only the launcher's ~10 MiB high-water mark. `control_check` proves it on a process
# that allocates a known amount.
LAUNCHER = r"""
import os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try: os.execvp(cmd[0], cmd)
    finally: os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(report, 'w') as f: f.write(f'{wall} {ru.ru_maxrss} {os.waitstatus_to_exitcode(status)}')
"""


def run_measured(cmd: list, env=None) -> tuple:
    "Run a command under the launcher; (wall seconds, peak RSS in MiB of the command's own process) — fails loudly on a non-zero exit."
    with tempfile.NamedTemporaryFile('r', suffix='.rss') as rep:
        p = subprocess.run([sys.executable, '-S', '-E', '-c', LAUNCHER, rep.name, *map(str, cmd)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        fields = Path(rep.name).read_text().split()
    out = p.stdout.decode(errors='replace')
    if p.returncode or len(fields) != 3 or fields[2] != '0':
        sys.exit(f"command failed (launcher {p.returncode}, command {fields[2:] or '?'}): {' '.join(map(str, cmd))}\n{out[-3000:]}")
    return float(fields[0]), int(fields[1]) / 1024


def run_naive(cmd: list, env=None) -> float:
    "The old measurement, for contrast: wait4 on a child started from this process; peak RSS in MiB."
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status): sys.exit(f"command failed: {' '.join(map(str, cmd))}")
    return ru.ru_maxrss / 1024


def control_check(mib: int = 512, ballast_mib: int = 1024, tol: float = 0.10) -> dict:
    """Prove the measurement on a process that allocates and touches `mib` MiB, measured while this process holds
    (and has touched) `ballast_mib` MiB more than it needs: the reading must be within `tol` of `mib`, else exit."""
    alloc = [sys.executable, '-S', '-E', '-c', f'import sys; b = bytes([1]) * ({mib} * 2**20); sys.exit(b[-1] != 1)']
    empty = [sys.executable, '-S', '-E', '-c', 'pass']
    ballast = bytearray(ballast_mib * 2**20)
    ballast[::4096] = b'\x01' * len(range(0, len(ballast), 4096))   # touch every page
    _, rss = run_measured(alloc)
    _, base = run_measured(empty)
    naive = run_naive(alloc)
    del ballast
    rep = dict(allocated_mib=mib, reported_mib=round(rss, 1), empty_interpreter_mib=round(base, 1),
               error=round(rss / mib - 1, 4), naive_reported_mib=round(naive, 1), parent_ballast_mib=ballast_mib)
    print(f'RSS control: a child touching {mib} MiB reads {rss:.0f} MiB ({100 * (rss / mib - 1):+.1f} %; an empty '
          f'interpreter reads {base:.0f} MiB); the old wait4-from-this-process reading of the same child: {naive:.0f} MiB', flush=True)
    if abs(rss / mib - 1) > tol: sys.exit(f'RSS control failed: {rss:.0f} MiB reported for {mib} MiB allocated (tolerance {tol:.0%})')
    return rep


def configs(base: Path, ckpts: dict) -> dict:
    "The merges both tools run, every parameter explicit."
    models = lambda ws, **p: [{'model': str(ckpts[d]), 'parameters': {'weight': w, **p}} for d, w in zip(DOMAINS, ws)]
    return {
        'linear': {'merge_method': 'linear', 'models': models([0.5, 0.3, 0.2]),
                   'parameters': {'normalize': True}, 'dtype': 'float32'},
        'task_arithmetic': {'merge_method': 'task_arithmetic', 'base_model': str(base), 'models': models([0.5, 0.3, 0.2]),
                            'parameters': {'normalize': False, 'lambda': 1.0}, 'dtype': 'float32'},
        'ties': {'merge_method': 'ties', 'base_model': str(base), 'models': models([1.0, 1.0, 1.0], density=0.5),
                 'parameters': {'normalize': True, 'lambda': 1.0}, 'dtype': 'float32'},
        # Model Breadcrumbs with a different gamma per model: 0.01 drops int(0.01·n) outliers per tensor, 0 none
        # (int(γ·n) = 0, where mergekit ≤ 0.1.4 kept nothing and 0.1.5 keeps the int(density·n) largest), 0.05 more;
        # rescale: true is mergekit's l1 rescale of the kept entries
        'breadcrumbs': {'merge_method': 'breadcrumbs', 'base_model': str(base),
                        'models': [{'model': str(ckpts[d]), 'parameters': {'weight': w, 'density': dn, 'gamma': g}}
                                   for d, w, dn, g in zip(DOMAINS, [0.5, 0.3, 0.2], [0.9, 0.8, 0.9], [0.01, 0.0, 0.05])],
                        'parameters': {'normalize': False, 'lambda': 1.0, 'rescale': True}, 'dtype': 'float32'},
        'breadcrumbs_ties': {'merge_method': 'breadcrumbs_ties', 'base_model': str(base), 'models': models([1.0, 1.0, 1.0], density=0.5, gamma=0.01),
                             'parameters': {'normalize': True, 'lambda': 1.0, 'rescale': False}, 'dtype': 'float32'},
        'dare_linear_one': {'merge_method': 'dare_linear', 'base_model': str(base),
                            'models': [{'model': str(ckpts['medmcqa']), 'parameters': {'weight': 1.0, 'density': 0.5}}],
                            'parameters': {'normalize': False}, 'dtype': 'float32'},
    }


def ours_cmd(cfg: Path, out: Path) -> list:
    return [sys.executable, '-c', 'import sys; from mixexperts.merging import merge_from_config; '
            'merge_from_config(sys.argv[1], sys.argv[2])', str(cfg), str(out)]


def dare_stats(out: Path, base, expert) -> dict:
    "Kept fraction of the task vector and the rescale of kept entries, over the tensors the expert changed."
    merged = load_params(out)
    kept = total = 0
    ratios = []
    for k in base.keys():
        tau = expert[k] - base[k]
        nz = tau != 0
        if not nz.any(): continue
        d = merged[k] - base[k]
        keep = nz & (d != 0)
        kept += int(keep.sum()); total += int(nz.sum())
        ratios.append(float((d[keep].double().abs().sum() / tau[keep].double().abs().sum())))   # l1 rescale of kept entries
    r = torch.tensor(ratios, dtype=torch.float64)
    return dict(kept_fraction=round(kept / total, 5), rescale_median=round(float(r.median()), 5),
                rescale_min=round(float(r.min()), 5), rescale_max=round(float(r.max()), 5), tensors=len(ratios))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=2, help='runs per tool and method (time: fastest; RSS: largest)')
    ap.add_argument('--venv', default=None, help='mergekit venv folder (default: the mixexperts cache)')
    ap.add_argument('--methods', nargs='+', default=['linear', 'task_arithmetic', 'ties', 'breadcrumbs'],
                    help='of linear, task_arithmetic, ties, breadcrumbs, breadcrumbs_ties')
    ap.add_argument('--skip-dare', action='store_true')
    a = ap.parse_args()

    t0 = time.perf_counter()
    experts = make_experts(DOMAINS)
    train = {d: read_json(p / 'expert.json')['train_seconds'] for d, p in experts.items()}
    ckpts = expert_checkpoints(experts)
    base = resolve_model('smollm2-135m-instruct')
    print(f'experts ready in {time.perf_counter() - t0:.0f} s (training seconds when made: {train}; settings {EXPERT_DEFAULTS})', flush=True)
    mk = mergekit_venv(Path(a.venv) if a.venv else cache_dir('venvs') / 'mergekit-0.1.5')
    mk_version = subprocess.run([str(mk.parent / 'python'), '-c', 'import importlib.metadata as m; print(m.version("mergekit"), m.version("torch"))'],
                                capture_output=True, text=True, check=True).stdout.split()
    print(f'mergekit {mk_version[0]} with torch {mk_version[1]} in {mk.parent.parent}', flush=True)

    control = control_check()
    work = Path(tempfile.mkdtemp(prefix='merge-parity-'))
    cfgs = configs(base, ckpts)
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    results = {}
    try:
        for m in a.methods:
            (work / f'{m}.yaml').write_text(yaml.safe_dump(cfgs[m]))
            times, rss = {'ours': [], 'mergekit': []}, {'ours': [], 'mergekit': []}
            for r in range(a.repeats):
                order = ['mergekit', 'ours'] if r % 2 == 0 else ['ours', 'mergekit']
                for tool in order:
                    out = work / f'{m}-{tool}'
                    shutil.rmtree(out, ignore_errors=True)
                    cmd = [str(mk), str(work / f'{m}.yaml'), str(out)] if tool == 'mergekit' else ours_cmd(work / f'{m}.yaml', out)
                    w, s = run_measured(cmd, env)
                    times[tool].append(w); rss[tool].append(s)
                    print(f'{m:16s} {tool:9s} run {r + 1}: {w:6.1f} s, peak RSS {s:6.0f} MiB', flush=True)
            ours, theirs = load_params(work / f'{m}-ours'), load_params(work / f'{m}-mergekit')
            check_aligned([ours, theirs], ['ours', 'mergekit'])
            diff, where = max_abs_diff(ours, theirs)
            results[m] = dict(max_abs_diff=diff, at=where, tensors=len(ours),
                              ours_seconds=round(min(times['ours']), 2), mergekit_seconds=round(min(times['mergekit']), 2),
                              ours_rss_mib=round(max(rss['ours'])), mergekit_rss_mib=round(max(rss['mergekit'])),
                              all_seconds={k: [round(x, 2) for x in v] for k, v in times.items()})
            results[m]['time_ratio'] = round(results[m]['ours_seconds'] / results[m]['mergekit_seconds'], 3)
            results[m]['rss_ratio'] = round(results[m]['ours_rss_mib'] / results[m]['mergekit_rss_mib'], 3)
            print(f'{m:16s} max |ours − mergekit| = {diff:.3g} (at {where}); time ratio {results[m]["time_ratio"]}, '
                  f'RSS ratio {results[m]["rss_ratio"]}', flush=True)
            for tool in ('ours', 'mergekit'): shutil.rmtree(work / f'{m}-{tool}', ignore_errors=True)

        dare = {}
        if not a.skip_dare:
            (work / 'dare.yaml').write_text(yaml.safe_dump(cfgs['dare_linear_one']))
            l1 = dict(cfgs['dare_linear_one'], parameters={'normalize': False, 'rescale': 'l1'})
            (work / 'dare_l1.yaml').write_text(yaml.safe_dump(l1))
            runs = {'mergekit': [str(mk), str(work / 'dare.yaml'), str(work / 'dare-mergekit'), '--random-seed', '0'],
                    'ours': ours_cmd(work / 'dare.yaml', work / 'dare-ours'),
                    'ours_rescale_l1': ours_cmd(work / 'dare_l1.yaml', work / 'dare-ours_rescale_l1')}
            b, e = load_params(base), load_params(ckpts['medmcqa'])
            for tool, cmd in runs.items():
                w, s = run_measured(cmd, env)
                dare[tool] = dict(dare_stats(work / f'dare-{tool}', b, e), seconds=round(w, 2), rss_mib=round(s))
                print(f'dare_linear (density 0.5, one expert) {tool:16s}: {dare[tool]}', flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    det = [results[m] for m in a.methods]
    summary = dict(
        max_abs_diff=max(r['max_abs_diff'] for r in det),
        time_ratio=round(sum(r['ours_seconds'] for r in det) / sum(r['mergekit_seconds'] for r in det), 3),
        rss_ratio=round(max(r['ours_rss_mib'] for r in det) / max(r['mergekit_rss_mib'] for r in det), 3),
        ours_seconds=round(sum(r['ours_seconds'] for r in det), 2), mergekit_seconds=round(sum(r['mergekit_seconds'] for r in det), 2),
        ours_peak_rss_mib=max(r['ours_rss_mib'] for r in det), mergekit_peak_rss_mib=max(r['mergekit_rss_mib'] for r in det),
        targets=dict(max_abs_diff=1e-6, time_ratio=0.7, rss_ratio=1.0), rss_control=control, methods=results, dare=dare,
        expert_train_seconds=train, repeats=a.repeats, mergekit=mk_version[0], torch=torch.__version__, cpus=os.cpu_count())
    print(json.dumps(summary))


if __name__ == '__main__':
    main()
