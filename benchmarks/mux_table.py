"""The measured numbers of the mux_sim chapter, recomputed and compared with a stored baseline.

The chapter (nbs/05a_mux_sim.ipynb) asserts relations between its numbers (the MUX above the best single model by
more than three standard deviations, subset search at least the all-models MUX on validation, ...); the numbers
themselves live here: the test accuracy of every method at k = 1, 3, 5, 10 on the 25-model MMLU pool (the chapter's
`mux_table` call), the k = 5 headline of seed 0 (the all-models MUX with the validation-accuracy tie-break, the
subject tie-break with and without the tie vote over subsets of up to 8 models, the γ validation chose), the
validation gap between the two strongest models at majority@5, and the same searches over five split seeds.

Every run draws from the seeds below, so the numbers are deterministic on one machine; the tolerance
(TOLERANCE_POINTS, in accuracy points) absorbs float differences across numpy builds. The baseline is
benchmarks/baselines/mux_table.json; `--write` replaces it with this run's numbers (after a change that is meant
to move them). The mux_sim chapter reads the five-seed table from the same file.

Usage: OMP_NUM_THREADS=1 python benchmarks/mux_table.py [--write] [--baseline FILE] [--no-seeds]
The last line printed is one JSON object: ok, n_compared, max_abs_diff_points, seconds, ...
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np

from mixexperts.core import data_path
from mixexperts.results import load_results
from mixexperts.mux_sim import ChoiceSource, MuxSimulation, mux_table, search_subsets

ROOT = Path(__file__).resolve().parent
BASELINE = ROOT / 'baselines' / 'mux_table.json'
COMMAND = 'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mux_table.py'
EXCLUDE = ['Qwen__Qwen2.5-14B-Instruct', 'AdaptLLM__finance-LLM', 'AdaptLLM__law-LLM', 'BAAI__OPI-Galactica-6.7B',
           'facebook__galactica-6.7b', 'ChanceFocus__finma-7b-nlp']
KS, TRIALS, SEED, SEEDS = (1, 3, 5, 10), 10, 0, range(5)
TOLERANCE_POINTS = 0.0051        # accuracies in % (the chapter's former check: ±0.0051 points)
TOLERANCE_GAP = 2e-4             # the validation gap between two models (a fraction)


def pct(x) -> float: return round(100 * float(x), 4)


def k_table(src) -> dict:
    "{method: {k: {test, test_std}}} in %, as the chapter's table cell computes it."
    table = mux_table(src, ks=KS, trials=TRIALS, seed=SEED, tie_breakers=('subject_accuracy', 'validation_accuracy'),
                      tie_vote='auto', search_options=dict(sizes=(2, 8)))
    out = {}
    for _, r in table.iterrows():
        out.setdefault(r['method'], {})[str(int(r['k']))] = dict(test=pct(r['test']), test_std=pct(r['test_std']))
    return out


def headline(src) -> dict:
    "The k = 5, seed 0 numbers the chapter's prose quotes."
    sim = MuxSimulation(src, k=5, trials=TRIALS, seed=SEED)
    q, g = sim.models.index('Qwen__Qwen2.5-7B-Instruct'), sim.models.index('google__gemma-2-9b-it')
    rep = sim.report()
    sim_s = sim.with_tie_breaker('subject_accuracy')
    sim_v = sim.with_tie_breaker('subject_accuracy', tie_vote='auto')
    res_v, plain8 = search_subsets(sim_v, sizes=(2, 8)), search_subsets(sim_s, sizes=(2, 8))
    head_v = sim_v.report(res_v.models)
    return dict(best_single=rep.attrs['best_single'],
                validation_gap_gemma_minus_qwen=round(float(sim.val_accuracy[g] - sim.val_accuracy[q]), 6),
                mux_all_models_test=pct(rep.loc['MUX', 'test']),
                subject_vote_subset_test=pct(head_v.loc['MUX', 'test']),
                subject_vote_subset_test_std=pct(head_v.loc['MUX', 'test_std']),
                subject_vote_subset_size=len(res_v.models), subject_vote_power=sim_v.vote_power(res_v.models),
                subject_vote_subset_validation=pct(res_v.validation_accuracy),
                subject_subset8_test=pct(sim_s.rate(sim_s.mux(plain8.models)[1]).mean()),
                subject_subset8_validation=pct(plain8.validation_accuracy))


def seeds(src) -> dict:
    "Test accuracy of the searched MUX (k = 5, subsets of 2..8) for five split seeds, with and without the tie vote."
    out = {'subject tie-break': [], 'subject tie-break + tie vote': []}
    for seed in SEEDS:
        s5 = MuxSimulation(src, k=5, trials=TRIALS, seed=seed, tie_breaker='subject_accuracy')
        for name, s in (('subject tie-break', s5), ('subject tie-break + tie vote', s5.with_tie_breaker('subject_accuracy', 'auto'))):
            out[name].append(pct(s.rate(s.mux(search_subsets(s, sizes=(2, 8)).models)[1]).mean()))
    return out


def compare(got, want, path='') -> list:
    "(path, got, want, |diff|, tolerance) of every number, recursively; strings and sizes must be equal."
    rows = []
    if isinstance(want, dict):
        for k in want: rows += compare(got.get(k) if isinstance(got, dict) else None, want[k], f'{path}/{k}')
    elif isinstance(want, list):
        for i, w in enumerate(want): rows += compare(got[i] if isinstance(got, list) and i < len(got) else None, w, f'{path}[{i}]')
    elif isinstance(want, float) and got is not None:
        tol = TOLERANCE_GAP if path.endswith('gap_gemma_minus_qwen') else TOLERANCE_POINTS
        rows.append((path, got, want, abs(float(got) - want), tol))
    else: rows.append((path, got, want, 0.0 if got == want else float('inf'), 0.0))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--baseline', default=str(BASELINE))
    ap.add_argument('--write', action='store_true', help="replace the baseline with this run's numbers")
    ap.add_argument('--no-seeds', action='store_true', help='skip the five-seed searches (and their comparison)')
    a = ap.parse_args()
    t0 = time.perf_counter()
    src = ChoiceSource(load_results(data_path('lm_eval', 'mmlu'), exclude_models=EXCLUDE, progress=False, n_jobs=1))
    got = dict(k_table=k_table(src))
    print(f"k table: {time.perf_counter() - t0:.1f} s", flush=True)
    got['headline'] = headline(src)
    print(f"headline: {time.perf_counter() - t0:.1f} s", flush=True)
    if not a.no_seeds:
        got['seeds'] = seeds(src)
        print(f"five seeds: {time.perf_counter() - t0:.1f} s", flush=True)
    seconds = round(time.perf_counter() - t0, 1)
    for m, row in got['k_table'].items():
        print(f"{m:55s}", '  '.join(f"k={k}: {v['test']:6.2f} ± {v['test_std']:.2f}" for k, v in row.items()))
    print(json.dumps(got['headline']))
    if 'seeds' in got: print(json.dumps(got['seeds']))
    path = Path(a.baseline)
    if a.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = dict(command=COMMAND, description='test accuracy in %, mean and std over 10 sampling trials; 25-model MMLU pool',
                   settings=dict(ks=list(KS), trials=TRIALS, seed=SEED, seeds=list(SEEDS), subset_sizes=[2, 8]),
                   tolerance_points=TOLERANCE_POINTS, tolerance_gap=TOLERANCE_GAP, **got)
        path.write_text(json.dumps(doc, indent=1) + '\n', encoding='utf-8')
        print(json.dumps(dict(ok=True, wrote=str(path), seconds=seconds)))
        return
    want = json.loads(path.read_text(encoding='utf-8'))
    if a.no_seeds: want.pop('seeds', None)
    rows = [r for key in ('k_table', 'headline', 'seeds') if key in want for r in compare(got.get(key), want[key], key)]
    bad = [r for r in rows if not r[3] <= r[4]]
    for p, g, w, d, tol in bad: print(f"differs: {p}: got {g}, baseline {w} (tolerance {tol})")
    finite = [r[3] for r in rows if np.isfinite(r[3]) and r[4] == TOLERANCE_POINTS]
    out = dict(ok=not bad, n_compared=len(rows), n_differ=len(bad), max_abs_diff_points=max(finite, default=0.0),
               tolerance_points=TOLERANCE_POINTS, baseline=str(path.relative_to(ROOT.parent) if path.is_relative_to(ROOT.parent) else path),
               mux_k5_subject_vote_subset=got['headline']['subject_vote_subset_test'], seconds=seconds)
    print(json.dumps(out))
    if bad: sys.exit(1)


if __name__ == '__main__':
    main()
