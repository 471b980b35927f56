"""Makespan of `mixexperts pool eval`'s scheduler on the MoM reference's 27-model pool x its 9 lm-eval benchmarks.

Jobs: every (model, benchmark) pair; humaneval is left out (it executes generated code). A job's work is
parameters (billions) x questions; a job of tensor-parallel size k holds k GPUs for work / k. The sizes are the
model table of the MoM reference's `label_formatter.py` registry (../shared/design/algorithms.md section 8) and the
question counts those of the lm-eval tasks (stated below, 0-shot, no --limit).

Measured on 1, 8 and 64 GPUs, and once more with four of the largest models (8-9B) at tp=2 (on 8 and 64 GPUs: one
GPU cannot hold a tp=2 job), against
  - the lower bound max(total work / G, longest job): no schedule finishes sooner (target: <= 1.10 x bound);
  - naive in-order placement: the same list scheduling with the jobs in pool order (model by model), as a loop
    over the pool with a worker per GPU runs them.

Usage: python benchmarks/pool_schedule.py
The last line printed is one JSON object: worst_bound_ratio (largest makespan / bound over 1, 8, 64 GPUs, tp=1),
naive_ratio (largest naive makespan / ours over the same runs), per-run figures, ...
"""
import json

from mixexperts.pool import Job, PoolModel, PoolConfig, TaskSpec, make_jobs, list_schedule, lower_bound
from mixexperts.rehearsal import MOM_POOL

# MoM registry, id 1-27: hub id -> parameters in billions (algorithms.md section 8), as the MoM notebook picks from it
# the reference's eval/output benchmarks (humaneval left out) -> lm-eval task and its question count
BENCHMARKS = {
    'agieval': ('agieval', 8062),          # English + Chinese AGIEval subsets
    'arc': ('arc_challenge', 1172),        # test
    'csqa': ('commonsense_qa', 1221),      # validation
    'hellaswag': ('hellaswag', 10042),     # validation
    'logiqa': ('logiqa', 651),             # test
    'mathqa': ('mathqa', 2985),            # test
    'medmcqa': ('medmcqa', 4183),          # validation
    'mgsm': ('mgsm_direct', 2750),         # 11 languages x 250
    'mmlu': ('mmlu', 14042),               # test, 57 subjects
}
TP2 = ('google/gemma-2-9b-it', 'meta-llama/Llama-3.1-8B-Instruct', 'mistralai/Ministral-8B-Instruct-2410', 'Henrychur/MMed-Llama-3-8B')
GPUS = (1, 8, 64)
TARGET = 1.10


def jobs(tp2=()):
    pool = PoolConfig(tuple(PoolModel(m, tp=2 if m in tp2 else 1, params=p) for m, p in MOM_POOL.items()))
    tasks = [TaskSpec(b, (t,)) for b, (t, _) in BENCHMARKS.items()]
    js = make_jobs(pool, tasks)
    n = dict(BENCHMARKS.values())   # the job's work uses the counts stated here
    return [Job(j.model, j.task, j.model.size * n[j.task.tasks[0]]) for j in js]


def main():
    runs = []
    for label, tp2 in (('tp1', ()), ('tp2', TP2)):
        js = jobs(tp2)
        for g in GPUS:
            if any(j.model.tp > g for j in js): continue
            ours, naive, bound = list_schedule(js, g).makespan, list_schedule(js, g, order='given').makespan, lower_bound(js, g)
            runs.append(dict(pool=label, gpus=g, jobs=len(js), makespan=round(ours, 1), naive=round(naive, 1), bound=round(bound, 1),
                             bound_ratio=round(ours / bound, 4), naive_ratio=round(naive / ours, 4)))
            print(f"{label} {g:3d} GPUs, {len(js)} jobs: longest-first {ours / bound:.3f} x bound, "
                  f"in pool order {naive / bound:.3f} x bound (naive / ours = {naive / ours:.3f})")
    tp1 = [r for r in runs if r['pool'] == 'tp1']
    out = dict(worst_bound_ratio=max(r['bound_ratio'] for r in tp1), naive_ratio=max(r['naive_ratio'] for r in tp1),
               worst_bound_ratio_tp2=max(r['bound_ratio'] for r in runs if r['pool'] == 'tp2'),
               naive_ratio_tp2=max(r['naive_ratio'] for r in runs if r['pool'] == 'tp2'),
               target_bound_ratio=TARGET, models=len(MOM_POOL), benchmarks=len(BENCHMARKS), tp2_models=list(TP2),
               questions={b: q for b, (_, q) in BENCHMARKS.items()}, runs=runs)
    out['meets_target'] = out['worst_bound_ratio'] <= TARGET and out['worst_bound_ratio_tp2'] <= TARGET
    print(json.dumps(out))


if __name__ == '__main__':
    main()
