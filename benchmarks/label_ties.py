"""Which tie-break should MoM's best-model labels use? Routed accuracy of a label-trained router, on validation only.

For each shipped benchmark (MMLU without the six models that have no ARC outputs, ARC, CommonsenseQA), the
questions of the routing chapter's fold 0 *training* set are split again (5-fold, seed 1, stratified by subject):
4/5 train a `query_label` router (frozen MiniLM embeddings, softmax head: Bench-CoE's query level, the cheap
stand-in for MoM's fine-tuned orchestrator) on best-model labels made with each tie policy, and the remaining
1/5 — the validation split — scores the routed accuracy. Fold 0's test questions are never read. Fold 0's
training questions are the other folds' test questions, so a 5-fold figure computed with the chosen default is
not wholly independent of this choice.

Usage: python benchmarks/label_ties.py [--out FILE.json]
The last line printed is one JSON object: per benchmark the split sizes, the best single model's validation
accuracy and each policy's routed validation accuracy; `mean` over the benchmarks; `best` the policy with the
highest mean (a deterministic policy wins an exact tie).
"""
import argparse, json, time
import numpy as np
from mixexperts.core import data_path, write_json
from mixexperts.results import load_results, TIE_POLICIES
from mixexperts.routers import get_router, routed_correct
from mixexperts.routing_eval import kfold_splits

MMLU_EXCLUDE = ['Qwen__Qwen2.5-14B-Instruct', 'AdaptLLM__finance-LLM', 'AdaptLLM__law-LLM', 'BAAI__OPI-Galactica-6.7B',
                'facebook__galactica-6.7b', 'ChanceFocus__finma-7b-nlp']
BENCHMARKS = {'mmlu': MMLU_EXCLUDE, 'arc': None, 'csqa': None}


def validation_split(rm):
    "(train, validation) inside the routing chapter's fold 0 training questions."
    tr, _ = kfold_splits(rm, 5, 0)[0]
    inner = rm.subset(tr)
    itr, iva = kfold_splits(inner, 5, 1)[0]
    return inner.subset(itr), inner.subset(iva)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', help='also write the JSON object to this file')
    a = ap.parse_args()
    out = {}
    for bench, excl in BENCHMARKS.items():
        rm = load_results(data_path('lm_eval', bench), exclude_models=excl, progress=False)
        train, val = validation_split(rm)
        b = train.models.index(train.best_single()[0])
        row = dict(n_train=train.n_questions, n_validation=val.n_questions, n_models=rm.n_models,
                   best_single=float(np.nanmean(val.correct[:, b])))
        for tie in TIE_POLICIES:
            t0 = time.perf_counter()
            r = get_router('query_label', tie=tie).fit(train)
            row[tie] = float(np.nanmean(routed_correct(val, r.route_matrix(val).index)))
            print(f'{bench:5} {tie:12} {row[tie]:.4f}  ({time.perf_counter() - t0:.0f} s)', flush=True)
        out[bench] = row
    mean = {t: float(np.mean([out[b][t] for b in BENCHMARKS])) for t in TIE_POLICIES}
    best = max(TIE_POLICIES, key=lambda t: (round(mean[t], 12), t != 'random'))
    res = dict(benchmarks=out, mean=mean, best=best, router='query_label', split='fold 0 training questions, inner 5-fold seed 1, fold 0')
    if a.out: write_json(res, a.out, indent=1, force=True)
    print(json.dumps(res))


if __name__ == '__main__':
    main()
