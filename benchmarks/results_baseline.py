"""The headline numbers of the results chapter, recomputed and compared with a stored baseline.

The chapter (nbs/01_results.ipynb) asserts relations between its numbers (the best single model ahead of the
runner-up by more than three standard errors, the oracle ahead of it, the mean of a samples file equal to lm-eval's
own aggregate); the numbers themselves live here: on the shipped MMLU outputs (31 models) the best single model and
its accuracy, the oracle accuracy (some model is right) and the number of questions no model answers; on ARC, the
mean `acc` of Qwen3-4B's samples file.

The data is fixed, so the numbers are deterministic; each tolerance is the one the chapter used when it asserted the
number itself. The baseline is benchmarks/baselines/results.json; `--write` replaces it with this run's numbers.

Usage: python benchmarks/results_baseline.py [--write] [--baseline FILE]
The last line printed is one JSON object: ok, n_compared, max_abs_diff, seconds, the numbers.
"""
import argparse, json, sys, time
from pathlib import Path

from mixexperts.core import data_path
from mixexperts.results import load_results, read_samples

ROOT = Path(__file__).resolve().parent
BASELINE = ROOT / 'baselines' / 'results.json'
COMMAND = '.venv/bin/python benchmarks/results_baseline.py'
TOLERANCE = dict(best_accuracy=5e-5, oracle_accuracy=5e-5, n_no_correct_model=0, arc_qwen3_4b_acc=1e-12)
# the exact checks the chapter made before they moved here: (value, tolerance), checked too
FORMER = dict(best_model=('Qwen__Qwen2.5-14B-Instruct', 0), best_accuracy=(0.8141, 5e-5), oracle_accuracy=(0.9905, 5e-5),
              n_no_correct_model=(119, 0), arc_qwen3_4b_acc=(0.507679180887372, 1e-12))


def numbers() -> dict:
    mmlu = load_results(data_path('lm_eval', 'mmlu'), progress=False, n_jobs=1)
    best, best_acc = mmlu.best_single()
    arc_file = next((data_path('lm_eval', 'arc') / 'Qwen__Qwen3-4B').glob('samples_*.jsonl.gz'))
    return dict(n_models=mmlu.n_models, n_questions=mmlu.n_questions, best_model=best, best_accuracy=best_acc,
                oracle_accuracy=mmlu.oracle_accuracy(), n_no_correct_model=int(round(mmlu.none_correct_fraction() * mmlu.n_questions)),
                arc_qwen3_4b_acc=float(read_samples(arc_file, metric='acc', keep_docs=False).score.mean()))


def row(key:str, got, want, tol) -> tuple:
    "(key, got, want, |diff|, tolerance): numbers within `tol`, anything else equal."
    if isinstance(want, (int, float)) and not isinstance(want, bool): return key, got, want, abs(got - want), tol
    return key, got, want, (0.0 if got == want else float('inf')), 0


def compare(got:dict, want:dict) -> list:
    "Every number of the baseline, and every former chapter check, against this run."
    rows = [row(k, got[k], w, TOLERANCE.get(k, 0)) for k, w in want.items()]
    return rows + [row(f'{k} (former chapter check)', got[k], w, tol) for k, (w, tol) in FORMER.items()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--baseline', default=str(BASELINE))
    ap.add_argument('--write', action='store_true', help="replace the baseline with this run's numbers")
    a = ap.parse_args()
    t0 = time.perf_counter()
    got = numbers()
    seconds = round(time.perf_counter() - t0, 1)
    path = Path(a.baseline)
    if a.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = dict(command=COMMAND, description='shipped MMLU outputs (31 models): best single model, oracle, questions no model '
                   'answers; ARC: mean acc of Qwen3-4B', tolerance=TOLERANCE, **got)
        path.write_text(json.dumps(doc, indent=1) + '\n', encoding='utf-8')
        print(json.dumps(dict(ok=True, wrote=str(path), seconds=seconds, **got)))
        return
    base = json.loads(path.read_text(encoding='utf-8'))
    rows = compare(got, {k: v for k, v in base.items() if k not in ('command', 'description', 'tolerance')})
    bad = [r for r in rows if not r[3] <= r[4]]
    for k, g, w, d, tol in rows: print(f"{'ok ' if d <= tol else 'BAD'} {k}: {g} (baseline {w}, tolerance {tol})")
    finite = [r[3] for r in rows if r[3] != float('inf')]
    print(json.dumps(dict(ok=not bad, n_compared=len(rows), max_abs_diff=max(finite) if finite else 0.0, seconds=seconds, **got)))
    if bad: sys.exit(1)


if __name__ == '__main__':
    main()
