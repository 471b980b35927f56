"""Time building the 31-model MMLU results matrix and its MoM labels from the shared .jsonl.gz files.

Baseline, measured in the same run: a reader in the style of MoM's label_formatter.py — stdlib json,
one dict per question keyed by (task, doc_id), labels chosen in a Python loop — with the seed's option-A
tie-break replaced by the gold log-likelihood, so that both sides must produce identical labels.

Usage: python benchmarks/results_load.py [--data DIR] [--skip-baseline]
The last line printed is one JSON object: seconds, n_models, n_questions, baseline_seconds, ratio, ...
"""
import argparse, glob, gzip, json, os, sys, time
from pathlib import Path

from mixexperts.core import data_path
from mixexperts.results import load_results, best_model_labels


def baseline(root: Path):
    "Seed-style: dict join in pure Python, then a per-question loop for labels."
    table = {}  # (task, doc_id) -> {model: (acc, gold loglik)}
    models = sorted(d.name for d in root.iterdir() if d.is_dir())
    for m in models:
        for p in sorted(glob.glob(str(root / m / 'samples_*.jsonl.gz'))):
            task = '_'.join(Path(p).name.split('_')[1:-1])
            with gzip.open(p, 'rt', encoding='utf-8') as f:
                for line in f:
                    o = json.loads(line)
                    gold = int(o['target'])
                    table.setdefault((task, o['doc_id']), {})[m] = (o['acc'], float(o['filtered_resps'][gold][0]))
    labels = {}
    for key, per in table.items():
        best, best_ll = None, None
        for m in models:  # strict '>' keeps the first model on exact ties, as ours does
            acc, ll = per[m]
            if acc == 1.0 and (best is None or ll > best_ll): best, best_ll = m, ll
        if best is not None: labels[f'{key[0]}:{key[1]}'] = best
    return len(models), len(table), labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=None, help='lm-eval MMLU folder (default: shared data lm_eval/mmlu)')
    ap.add_argument('--skip-baseline', action='store_true')
    ap.add_argument('--jobs', type=int, default=2)
    a = ap.parse_args()
    root = Path(a.data) if a.data else data_path('lm_eval', 'mmlu')

    t0 = time.perf_counter()
    rm = load_results(root, n_jobs=a.jobs, progress=False)
    t1 = time.perf_counter()
    labels = best_model_labels(rm)
    t2 = time.perf_counter()
    ours = t2 - t0
    print(f"mixexperts: matrix {t1 - t0:.2f} s + labels {t2 - t1:.2f} s = {ours:.2f} s "
          f"({rm.n_questions} questions x {rm.n_models} models, {a.jobs} reader processes)")

    out = dict(seconds=round(ours, 3), matrix_seconds=round(t1 - t0, 3), labels_seconds=round(t2 - t1, 3),
               n_models=rm.n_models, n_questions=rm.n_questions, n_labels=len(labels), jobs=a.jobs,
               cpus=os.cpu_count(), target_seconds=10.0)
    if not a.skip_baseline:
        t3 = time.perf_counter()
        n_models, n_questions, base_labels = baseline(root)
        base = time.perf_counter() - t3
        same = dict(zip(labels['qid'], labels['label'])) == base_labels
        print(f"baseline (seed-style stdlib json + dict join): {base:.2f} s; same labels: {same}")
        if not same or (n_models, n_questions) != (rm.n_models, rm.n_questions):
            sys.exit("labels or shapes differ from the baseline")
        out.update(baseline='seed-style stdlib json + dict join', baseline_seconds=round(base, 3),
                   ratio=round(base / ours, 2), labels_match_baseline=same)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
