"""The `factor` router against the subject router and the best single model, 5-fold out of fold, on the shipped data.

Baselines in the same run (same folds, same questions): `subject` (Bench-CoE's subject level, the strongest simple
router on MMLU) and the best single model of each training fold. Each line gives the accuracies, `factor` − `subject`
and `factor` − best single with the paired 95% interval (`CVResult.paired`), and the seconds of `cross_validate`
(embeddings cached after their first computation).

Usage: OMP_NUM_THREADS=1 python benchmarks/route_factor.py [--benchmarks mmlu25,mmlu31,arc,csqa] [--seeds 0]
The last line printed is one JSON object: rows (one per benchmark and seed) and seconds.
"""
import argparse, json, time
import numpy as np

from mixexperts.core import data_path
from mixexperts.results import load_results
from mixexperts.routers import MMLU_ARC_POOL_EXCLUDE, routed_correct
from mixexperts.routing_eval import cross_validate
from mixexperts.stats import paired_difference


def matrices(names:list) -> dict:
    "benchmark label -> results matrix."
    out, mmlu = {}, None
    for b in names:
        if b.startswith('mmlu'):
            mmlu = mmlu or load_results(data_path('lm_eval', 'mmlu'), progress=False)
            out[b] = mmlu.select(exclude=MMLU_ARC_POOL_EXCLUDE) if b == 'mmlu25' else mmlu
        else: out[b] = load_results(data_path('lm_eval', b), progress=False)
    return out


def compare(rm, seed:int) -> dict:
    "One 5-fold run of best_single, subject and factor: accuracies and the paired differences of factor."
    t0 = time.perf_counter()
    res = cross_validate(rm, ['factor', 'subject', 'best_single'], folds=5, seed=seed, costs=None, progress=False)
    t, s = res.table(), res.summary()
    d = paired_difference(routed_correct(rm, res.picks['factor']), routed_correct(rm, res.picks['subject']))
    return dict(n=rm.n_questions, models=rm.n_models, factor=float(t.loc['factor', 'accuracy']), subject=float(t.loc['subject', 'accuracy']),
                best_single=s['best_single_accuracy'], vs_subject=float(d['diff']), vs_subject_ci95=[float(d['low']), float(d['high'])],
                vs_best_single=s['routers']['factor']['vs_best_single'], vs_best_single_ci95=s['routers']['factor']['ci95'],
                seconds=round(time.perf_counter() - t0, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--benchmarks', default='mmlu25,mmlu31,arc,csqa')
    ap.add_argument('--seeds', default='0', help='fold seeds')
    a = ap.parse_args()
    t0, rows = time.perf_counter(), []
    print('baselines: subject and the best single model of each training fold, on the same held-out questions (paired)')
    for b, rm in matrices(a.benchmarks.split(',')).items():
        for sd in [int(x) for x in a.seeds.split(',')]:
            r = dict(benchmark=b, seed=sd, **compare(rm, sd))
            rows.append(r)
            print(f"{b:7} seed {sd}: factor {100 * r['factor']:.2f}  subject {100 * r['subject']:.2f}  best single {100 * r['best_single']:.2f}  "
                  f"factor − subject {100 * r['vs_subject']:+.2f} [{100 * r['vs_subject_ci95'][0]:+.2f}, {100 * r['vs_subject_ci95'][1]:+.2f}]  "
                  f"factor − best single {100 * r['vs_best_single']:+.2f} [{100 * r['vs_best_single_ci95'][0]:+.2f}, {100 * r['vs_best_single_ci95'][1]:+.2f}]  "
                  f"({r['seconds']} s)", flush=True)
    print(json.dumps(dict(rows=rows, seconds=round(time.perf_counter() - t0, 1))))


if __name__ == '__main__':
    main()
