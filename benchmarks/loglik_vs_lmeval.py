"""Log-likelihood scoring of MMLU questions with SmolLM2 on CPU: mixexperts' HFBackend vs lm-eval's own `hf` model.

Both score the same (context, continuation) requests — lm-eval's 0-shot MMLU prompt with continuations " A".." D" —
on the same cached SmolLM2 weights, fp32, the same batch size, after one warm-up call each. The two sides are
interleaved chunk by chunk (alternating which goes first), so load from other processes on a shared machine hits both
alike; the times are sums over chunks.
Usage: python benchmarks/loglik_vs_lmeval.py [--n 200] [--batch-size 16] [--chunk 20]
The last line is one JSON object: ratio (lm-eval seconds / ours), agreement, n_questions, ...
"""
import argparse, json, os, time
import numpy as np

os.environ.setdefault('HF_HUB_OFFLINE', '1')
from mixexperts.core import data_path
from mixexperts.results import load_results
from mixexperts.backends import HFBackend
from mixexperts.models import resolve_model
from mixexperts.tasks import mmlu_prompt


def questions(n, seed):
    rm = load_results(data_path('lm_eval', 'mmlu'), models=['Qwen__Qwen3-4B'], progress=False)
    pick = np.random.default_rng(seed).choice(rm.n_questions, size=n, replace=False)
    return rm.questions.iloc[np.sort(pick)]


def interleaved(fns, reqs, chunk):
    "Run each fn over the same chunks of requests, alternating the order per chunk; total seconds and outputs per fn."
    for fn in fns: fn(reqs[:4])  # warm-up
    secs, outs = [0.0] * len(fns), [[] for _ in fns]
    for c, start in enumerate(range(0, len(reqs), chunk)):
        part = reqs[start:start + chunk]
        order = range(len(fns)) if c % 2 == 0 else reversed(range(len(fns)))
        for k in order:
            t = time.perf_counter(); res = fns[k](part); secs[k] += time.perf_counter() - t
            outs[k].append(res)
    return secs, [[x for r in o for x in r] for o in outs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=200); ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--chunk', type=int, default=20, help='questions per interleaved chunk'); ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    q = questions(a.n, a.seed)
    reqs = [(mmlu_prompt(r.question, r.choices, r.subject), f' {L}') for r in q.itertuples() for L in 'ABCD'[:r.n_choices]]

    ours = HFBackend('smollm2-135m-instruct', batch_size=a.batch_size)
    from lm_eval.models.huggingface import HFLM
    from lm_eval.api.instance import Instance
    lm = HFLM(pretrained=str(resolve_model('smollm2-135m-instruct')), device='cpu', batch_size=a.batch_size, dtype='float32')
    inst = lambda rs: [Instance(request_type='loglikelihood', doc={}, arguments=r, idx=i) for i, r in enumerate(rs)]
    # chunks hold whole questions (4 requests each), so both sides can share a question's context
    (t_ours, t_lm), (res_ours, res_lm) = interleaved([ours.loglikelihood, lambda rs: lm.loglikelihood(inst(rs), disable_tqdm=True)],
                                                      reqs, 4 * a.chunk)

    ll_ours = np.array([x[0] for x in res_ours]).reshape(len(q), 4)
    ll_lm = np.array([x[0] for x in res_lm]).reshape(len(q), 4)
    agree = float((ll_ours.argmax(1) == ll_lm.argmax(1)).mean())
    gold = q['gold'].to_numpy()
    out = dict(n_questions=len(q), n_requests=len(reqs), ours_seconds=round(t_ours, 3), lmeval_seconds=round(t_lm, 3),
               ratio=round(t_lm / t_ours, 2), agreement=agree, max_abs_loglik_diff=float(np.abs(ll_ours - ll_lm).max()),
               accuracy_ours=float((ll_ours.argmax(1) == gold).mean()), accuracy_lmeval=float((ll_lm.argmax(1) == gold).mean()),
               batch_size=a.batch_size, chunk_questions=a.chunk, method='interleaved chunks', baseline='lm_eval.models.huggingface.HFLM', cpus=os.cpu_count())
    print(f"ours {t_ours:.2f} s, lm-eval hf {t_lm:.2f} s -> {out['ratio']}x; same choice on {agree:.1%} of {len(q)} questions")
    print(json.dumps(out))


if __name__ == '__main__':
    main()
