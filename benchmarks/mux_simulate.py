"""Time the offline SLM-MUX simulation: 12.5k MMLU questions x 25 models x k=5 samples x 10 trials.

Ours (mixexperts.mux_sim): draw every sample by inverse CDF from the models' softmax over option
log-likelihoods, count each model's votes, score consistency, and apply the MUX rule (most consistent model,
ties to the higher validation accuracy, then model order), all as numpy array operations.

Baseline, measured in the same run on the *same sampled input* (the same samples, the same within-model
tie-break draws, the same priorities): a plain-Python loop over trials and questions that states the SLM-MUX
selection rule literally (Counter per model, share = count / k, candidates within 1e-9 of the best, tie-break).
The loop is slow, so it runs on the first --loop-questions questions (all trials) and its time is scaled
linearly to all questions; both implementations' decisions are compared on those questions.

Usage: python benchmarks/mux_simulate.py [--data DIR] [--k 5] [--trials 10] [--loop-questions 1000]
The last line printed is one JSON object: seconds, ratio, agreement, ...
"""
import argparse, json, os, sys, time
from collections import Counter
import numpy as np

from mixexperts.core import data_path
from mixexperts.results import load_results
from mixexperts.voting import get_confidence, mux_answer, tally
from mixexperts.mux_sim import ChoiceSource, MuxSimulation, split_validation

EXCLUDE = ['Qwen__Qwen2.5-14B-Instruct', 'AdaptLLM__finance-LLM', 'AdaptLLM__law-LLM', 'BAAI__OPI-Galactica-6.7B',
           'facebook__galactica-6.7b', 'ChanceFocus__finma-7b-nlp']


def ours(src, k, trials, seed, priority):
    "Sample, tally, score and select with mixexperts' vectorised code; returns arrays and timings."
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples, _ = src.draw(k, trials, rng)
    t1 = time.perf_counter()
    jitter = np.moveaxis(rng.integers(0, 256, (src.n_answers,) + samples.shape[:-1], dtype=np.uint8), 0, -1)  # [..., V] view, answer-major in memory
    t = tally(samples, src.n_answers, jitter=jitter)
    scores, answers = get_confidence('consistency').score(t)
    winner, answer = mux_answer(scores, answers, priority)
    correct = (answer >= 0) & src.correct_table[np.arange(src.n_questions)[None], np.maximum(answer, 0)]
    t2 = time.perf_counter()
    return samples, jitter, winner, answer, correct, t1 - t0, t2 - t1


def plain_loop(samples, jitter, priority, gold, k):
    "The MUX rule in plain Python, one question at a time: (winners, answers, correct) as nested lists."
    T, Q, M = samples.shape[:3]
    samples, jitter, prio = samples.tolist(), jitter.tolist(), list(priority)
    winners, answers, correct = [], [], []
    for t in range(T):
        wt, at, ct = [], [], []
        for q in range(Q):
            scores, picks = [], []
            for m in range(M):
                counts = Counter(v for v in samples[t][q][m] if v >= 0)
                if not counts:
                    scores.append(0.0); picks.append(-1); continue
                top = max(counts.values())
                tied = [a for a, c in counts.items() if c == top]
                picks.append(max(tied, key=lambda a: (jitter[t][q][m][a], -a)))
                scores.append(top / k)
            best = max(scores)
            cands = [m for m in range(M) if abs(scores[m] - best) < 1e-9]
            win = cands[0]
            for m in cands[1:]:
                if prio[m] > prio[win]: win = m
            wt.append(win); at.append(picks[win]); ct.append(picks[win] == gold[q])
        winners.append(wt); answers.append(at); correct.append(ct)
    return winners, answers, correct


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=None, help='lm-eval MMLU folder or .parquet (default: shared data lm_eval/mmlu)')
    ap.add_argument('--k', type=int, default=5)
    ap.add_argument('--trials', type=int, default=10)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--loop-questions', type=int, default=1000, help='questions the plain loop runs on (0: all)')
    ap.add_argument('--repeat', type=int, default=5, help='runs of ours (the fastest counts); the loop runs twice')
    a = ap.parse_args()
    root = a.data or data_path('lm_eval', 'mmlu')
    rm = load_results(root, exclude_models=EXCLUDE, progress=False)
    src = ChoiceSource(rm)
    val = split_validation(src.n_questions, src.subjects, seed=a.seed)
    priority = src.greedy_correct[val].mean(0)  # tie-break: validation accuracy
    print(f"{src.n_questions} questions x {src.n_models} models x k={a.k} x {a.trials} trials "
          f"= {src.n_questions * src.n_models * a.k * a.trials / 1e6:.1f} M samples")

    runs = [ours(src, a.k, a.trials, a.seed, priority) for _ in range(a.repeat)]
    best = min(runs, key=lambda r: r[5] + r[6])
    samples, jitter, winner, answer, correct, sample_s, decide_s = best
    total = sample_s + decide_s
    print(f"mixexperts: sampling {sample_s:.3f} s + tally/score/select {decide_s:.3f} s = {total:.3f} s "
          f"(fastest of {a.repeat}); MUX accuracy {correct.mean():.4f}")

    t0 = time.perf_counter()
    sim = MuxSimulation(src, k=a.k, trials=a.trials, seed=a.seed)
    sim_s = time.perf_counter() - t0
    print(f"MuxSimulation end to end (split, sampling, tally, validation accuracies): {sim_s:.3f} s")

    nq = a.loop_questions or src.n_questions
    gold = rm.questions['gold'].to_numpy()[:nq].tolist()
    loop_s = np.inf
    for _ in range(2):  # the faster of two runs, as for ours
        t0 = time.perf_counter()
        w_loop, a_loop, c_loop = plain_loop(samples[:, :nq], jitter[:, :nq], priority, gold, a.k)
        loop_s = min(loop_s, time.perf_counter() - t0)
    scale = src.n_questions / nq
    agree_w = float((np.array(w_loop) == winner[:, :nq]).mean())
    agree_a = float((np.array(a_loop) == answer[:, :nq]).mean())
    print(f"plain-Python loop (faster of 2): {loop_s:.2f} s on {nq} questions x {a.trials} trials"
          + (f", scaled x{scale:.2f} to {src.n_questions} questions: {loop_s * scale:.1f} s" if nq < src.n_questions else '')
          + f"; same winner on {agree_w:.2%}, same answer on {agree_a:.2%} of decisions")
    out = dict(seconds=round(total, 4), sample_seconds=round(sample_s, 4), decide_seconds=round(decide_s, 4),
               simulation_seconds=round(sim_s, 4), n_questions=src.n_questions, n_models=src.n_models, k=a.k,
               trials=a.trials, loop_questions=nq, loop_seconds_measured=round(loop_s, 3),
               loop_seconds=round(loop_s * scale, 3), loop_scaled=nq < src.n_questions,
               ratio=round(loop_s * scale / total, 1), ratio_decide_only=round(loop_s * scale / decide_s, 1),
               agreement_winner=agree_w, agreement_answer=agree_a, mux_accuracy=round(float(correct.mean()), 5),
               cpus=os.cpu_count(), target_seconds=2.0, target_ratio=50)
    if agree_w < 1.0: sys.exit(f"decisions differ from the plain loop: {json.dumps(out)}")
    print(json.dumps(out))


if __name__ == '__main__':
    main()
