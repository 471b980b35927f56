"""One Model Swarms update step over 10 LoRA particles (no evaluation): in memory (mixexperts.search) vs the seed's
approach (particle folders on disk, 5 safetensors merges per particle: p−x, g−x, x−w, new v, new x, each
loading its inputs and saving its output). Also: utility evaluation throughput (multiple-choice questions/s with a
candidate in the resident base model's LoRA slot). Last line: one JSON object.

    .venv/bin/python benchmarks/search_step.py [--particles 10] [--questions 20] [--repeats 3] [--default-experts]
"""
import argparse, json, os, shutil, sys, tempfile, time
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from mixexperts.experts import QUICK_EXPERTS, EXPERT_DEFAULTS
from mixexperts.search import load_experts, populate, SearchState, get_rule, AdapterSlot, make_utility

DOMAINS = ['mmlu', 'medmcqa', 'medqa']   # + populate children up to --particles


def seed_merge(weights, dirs, out):
    "The seed's fast lora_merge: load each adapter_model.safetensors, Σ wᵢ·Tᵢ per key, save into `out`."
    ts = [load_file(str(Path(d)/'adapter_model.safetensors')) for d in dirs]
    merged = {k: sum(w * t[k] for w, t in zip(weights, ts)) for k in ts[0]}
    save_file(merged, str(Path(out)/'adapter_model.safetensors'))


def reference_step(root, n, coefs, lam):
    "One PSO step the seed's way: copy folders, then 5 disk merges per particle."
    for i in range(n):
        p = root/f'particle_{i}'
        for sub in ('p_x', 'g_x', 'x_w'):   # the seed copytree's a real adapter so each result dir is loadable
            shutil.rmtree(p/sub, ignore_errors=True); shutil.copytree(p/'now', p/sub)
        seed_merge([1, -1], [p/'personal_best', p/'now'], p/'p_x')
        seed_merge([1, -1], [root/'global_best', p/'now'], p/'g_x')
        seed_merge([1, -1], [p/'now', root/'global_worst'], p/'x_w')
        seed_merge(list(coefs[i]), [p/'velocity', p/'p_x', p/'g_x', p/'x_w'], p/'velocity')
        seed_merge([1, lam], [p/'now', p/'velocity'], p/'now')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--particles', type=int, default=10)
    ap.add_argument('--questions', type=int, default=5)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--default-experts', action='store_true', help='the default (rank 8) experts instead of the quick ones')
    a = ap.parse_args()
    settings = {} if a.default_experts else QUICK_EXPERTS
    ads, labels, E = load_experts([f'expert-lora:{d}' for d in DOMAINS], settings)
    X, kids = populate(E, a.particles, seed=0)
    n, D = X.shape
    print(f"{n} particles of {D:,} LoRA factor values (rank {ads[0].config['r']}, {len(ads[0].factors)} tensors)")

    # ours: the rule on the in-memory population
    rule = get_rule('swarm')
    st = SearchState(X, E, labels + kids)
    st.first_utilities([float(v) for v in np.linspace(0.2, 0.5, n)])
    rule.init_velocity(st, 0)
    ours = []
    for r in range(a.repeats):
        t0 = time.perf_counter(); rule.step(st, seed=0, t=r + 1, patience=10); ours.append(time.perf_counter() - t0)
    ours_s = min(ours)
    print(f"ours (in memory):        {ours_s * 1e3:9.2f} ms per step (best of {a.repeats})")

    # reference: particle folders on disk, 5 merges per particle
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        tpl = ads[0]
        def write(vec, folder):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tpl.path/'adapter_config.json', folder/'adapter_config.json')
            ps = tpl.factors.unflat(vec)
            save_file({k: ps[k].contiguous() for k in ps.keys()}, str(folder/'adapter_model.safetensors'))
        for i in range(n):
            for sub, v in (('now', X[i]), ('personal_best', X[i]), ('velocity', X[(i + 1) % n] - X[i])): write(v, root/f'particle_{i}'/sub)
        write(X[-1], root/'global_best'); write(X[0], root/'global_worst')
        coefs = [rule.coefficients(np.random.default_rng([0, i])) for i in range(n)]
        ref = []
        for r in range(a.repeats):
            t0 = time.perf_counter(); reference_step(root, n, coefs, 1.0); ref.append(time.perf_counter() - t0)
        ref_s = min(ref)
    print(f"reference (disk merges): {ref_s * 1e3:9.2f} ms per step (best of {a.repeats}; {5 * n} merges + {3 * n} folder copies)")
    print(f"ratio: {ref_s / ours_s:.1f}x")

    # utility throughput: multiple-choice questions per second with a candidate in the LoRA slot
    ut = make_utility(dict(name='mc_accuracy', dataset='mmlu', dev=[0, a.questions], test=[0, a.questions]))
    slot = AdapterSlot(ads[0])
    slot.load(X[0]); ut.score(slot, 'dev')   # warm-up
    t0 = time.perf_counter()
    for i in range(1, 3): slot.load(X[i]); ut.score(slot, 'dev')
    qps = 2 * a.questions / (time.perf_counter() - t0)
    print(f"utility throughput: {qps:.2f} questions/s (mmlu, {a.questions} questions x 2 candidates, {torch.get_num_threads()} threads)")
    print(json.dumps(dict(ratio=round(ref_s / ours_s, 2), ours_seconds=round(ours_s, 6), reference_seconds=round(ref_s, 6),
                          particles=n, values_per_particle=D, rank=ads[0].config['r'],
                          questions_per_second=round(qps, 3))))


if __name__ == '__main__':
    sys.exit(main())
