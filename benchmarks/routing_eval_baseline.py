"""The measured numbers of the routing_eval chapter, recomputed and compared with a stored baseline.

The chapter (nbs/04b_routing_eval.ipynb) asserts relations between its numbers (a router above the best single model
by more than three standard errors of the paired per-question difference, the 5-fold mean of the best single model
equal to its accuracy over all questions, ...); the numbers themselves live here:

- the 5-fold (seed 0) held-out accuracy of the best single model (chosen on the training folds) on the 25-model pool
  and on all 31 models, and of the `subject` router (Bench-CoE's subject level) on the 25-model pool — the chapter's
  `cross_validate` calls, restricted to those routers;
- how many accuracy points the three best models of at most 60% of Qwen2.5-7B-Instruct's cost are below it;
- with --explore (minutes): the slow exploration cell's per-model logistic regressions on TF-IDF + subject +
  embedding features, C = 0.1, scored on the held-out folds.

Folds, seeds and the data are fixed, so the numbers are deterministic; each tolerance (below, in the baseline file)
absorbs float differences across library builds and is the one the chapter used to assert the number itself. The
baseline is benchmarks/baselines/routing_eval.json; `--write` replaces it with this run's numbers.

Usage: OMP_NUM_THREADS=1 python benchmarks/routing_eval_baseline.py [--explore] [--write] [--baseline FILE]
The last line printed is one JSON object: ok, n_compared, max_abs_diff, seconds, the numbers.
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np

from mixexperts.core import data_path
from mixexperts.results import load_results
from mixexperts.routers import MMLU_ARC_POOL_EXCLUDE, model_costs

ROOT = Path(__file__).resolve().parent
BASELINE = ROOT / 'baselines' / 'routing_eval.json'
COMMAND = 'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/routing_eval_baseline.py --explore'
# tolerance of each number against the baseline (fractions, except the cost gaps, in points): the chapter's own
TOLERANCE = dict(best_single_25=5e-5, best_single_31=5e-5, subject_25=0.005, cheap_gaps_points=0.06, explore_tfidf_subject_embedding=0.002)
# the exact checks the chapter made before they moved here: (value, tolerance), checked too
FORMER = dict(best_single_25=(0.7425, 5e-5), best_single_31=(0.8141, 5e-5), subject_25=(0.757, 0.005),
              cheap_gaps_points=([2.0, 3.5, 6.7], 0.06), explore_tfidf_subject_embedding=(0.7618, 0.002))


def numbers(explore:bool) -> dict:
    from mixexperts.routing_eval import cross_validate
    mmlu_all = load_results(data_path('lm_eval', 'mmlu'), progress=False, n_jobs=1)
    mmlu = mmlu_all.select(exclude=MMLU_ARC_POOL_EXCLUDE)
    out = {}
    cv25 = cross_validate(mmlu, ['best_single', 'subject'], folds=5, seed=0, progress=False)
    out['best_single_25'] = float(cv25.baselines['best_single_accuracy'].mean())
    out['best_single_model_25'] = sorted(set(cv25.baselines['best_single_model']))
    out['subject_25'] = float(cv25.table().loc['subject', 'accuracy'])
    cv31 = cross_validate(mmlu_all, ['best_single'], folds=5, seed=0, costs=None, progress=False)
    out['best_single_31'] = float(cv31.baselines['best_single_accuracy'].mean())
    out['best_single_model_31'] = sorted(set(cv31.baselines['best_single_model']))
    costs, acc = model_costs(mmlu.models), mmlu.accuracy()[mmlu.models].to_numpy()
    ref = mmlu.models.index('Qwen__Qwen2.5-7B-Instruct')
    cheap = [j for j in np.argsort(-acc, kind='stable') if costs[j] <= 0.6 * costs[ref]][:3]
    out['cheap_models'] = [mmlu.models[j] for j in cheap]
    out['cheap_gaps_points'] = [round(float(100 * (acc[ref] - acc[j])), 4) for j in cheap]
    if explore: out['explore_tfidf_subject_embedding'] = explore_cell(mmlu)
    return out


def explore_cell(mmlu) -> float:
    "The chapter's slow exploration: TF-IDF + subject + embedding, one logistic regression per model, C = 0.1."
    import pandas as pd, scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from mixexperts.embeddings import embed_texts
    from mixexperts.routers import tfidf_features, tfidf_vocabulary
    from mixexperts.routing_eval import kfold_splits
    texts, C = mmlu.questions['text'].tolist(), mmlu.correct
    subj = pd.get_dummies(mmlu.questions['subject']).to_numpy(np.float64)
    E = embed_texts(texts)
    hits = []
    for tr, te in kfold_splits(mmlu, 5, 0):
        vocab, idf = tfidf_vocabulary([texts[i] for i in tr])
        X = sp.hstack([tfidf_features(texts, vocab, idf), sp.csr_matrix(subj), sp.csr_matrix(E)]).tocsr()
        P = np.column_stack([LogisticRegression(C=0.1, solver='liblinear', max_iter=500).fit(X[tr], C[tr, m] > 0.5).predict_proba(X[te])[:, 1]
                             for m in range(mmlu.n_models)])
        hits.append(C[te, P.argmax(1)].mean())
    return float(np.mean(hits))


def row(key:str, got, want, tol:float) -> tuple:
    "(key, got, want, |diff|, tolerance): numbers and lists of numbers within `tol`, anything else equal."
    if isinstance(want, list) and want and isinstance(want[0], (int, float)):
        d = max(abs(a - b) for a, b in zip(got, want)) if len(got) == len(want) else float('inf')
    elif isinstance(want, (int, float)): d = abs(got - want)
    else: d, tol = (0.0 if got == want else float('inf')), 0.0
    return key, got, want, d, tol


def compare(got:dict, want:dict) -> list:
    "Every number of the baseline, and every former chapter check, against this run (keys this run lacks are skipped)."
    rows = [row(k, got[k], w, TOLERANCE.get(k, 0.0)) for k, w in want.items() if k in got]
    return rows + [row(f'{k} (former chapter check)', got[k], w, tol) for k, (w, tol) in FORMER.items() if k in got]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--baseline', default=str(BASELINE))
    ap.add_argument('--explore', action='store_true', help="also recompute the slow exploration cell's number (minutes)")
    ap.add_argument('--write', action='store_true', help="replace the baseline with this run's numbers")
    a = ap.parse_args()
    t0 = time.perf_counter()
    got = numbers(a.explore)
    seconds = round(time.perf_counter() - t0, 1)
    path = Path(a.baseline)
    if a.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = dict(command=COMMAND, description='5-fold (seed 0) held-out accuracies on the shipped MMLU outputs, as fractions; '
                   'cheap_gaps_points: accuracy points below Qwen2.5-7B-Instruct', tolerance=TOLERANCE, **got)
        path.write_text(json.dumps(doc, indent=1) + '\n', encoding='utf-8')
        print(json.dumps(dict(ok=True, wrote=str(path), seconds=seconds, **got)))
        return
    base = json.loads(path.read_text(encoding='utf-8'))
    want = {k: v for k, v in base.items() if k not in ('command', 'description', 'tolerance')}
    rows = compare(got, want)
    bad = [r for r in rows if not r[3] <= r[4]]
    for k, g, w, d, tol in rows: print(f"{'ok ' if d <= tol else 'BAD'} {k}: {g} (baseline {w}, tolerance {tol})")
    finite = [r[3] for r in rows if np.isfinite(r[3])]
    print(json.dumps(dict(ok=not bad, n_compared=len(rows), max_abs_diff=max(finite) if finite else 0.0, seconds=seconds, **got)))
    if bad: sys.exit(1)


if __name__ == '__main__':
    main()
