"""k samples for each of 20 prompts with SmolLM2 on CPU: one batched call (num_return_sequences=k) vs one call per sample.

Usage: python benchmarks/sampling.py [--k 5] [--prompts 20] [--max-tokens 32]
The last line is one JSON object: ratio (per-sample seconds / batched seconds), ...
"""
import argparse, json, os, time

os.environ.setdefault('HF_HUB_OFFLINE', '1')
from mixexperts.core import data_path
from mixexperts.backends import HFBackend


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--k', type=int, default=5); ap.add_argument('--prompts', type=int, default=20)
    ap.add_argument('--max-tokens', type=int, default=32); ap.add_argument('--batch-size', type=int, default=8)
    a = ap.parse_args()
    gsm = [json.loads(l) for l in open(data_path('reasoning', 'gsm8k_test.jsonl'), encoding='utf-8')][:a.prompts]
    prompts = [[{'role': 'user', 'content': g['question']}] for g in gsm]
    b = HFBackend('smollm2-135m-instruct', batch_size=a.batch_size)
    b.generate(prompts[:2], n=2, temperature=0.7, max_tokens=4, seed=0)  # warm-up
    t = time.perf_counter()
    batched = b.generate(prompts, n=a.k, temperature=0.7, max_tokens=a.max_tokens, seed=0)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = [[b.generate([p], n=1, temperature=0.7, max_tokens=a.max_tokens, seed=100 * i + j)[0][0] for j in range(a.k)]
              for i, p in enumerate(prompts)]
    t_single = time.perf_counter() - t
    toks = lambda res: sum(c.completion_tokens for r in res for c in r)
    out = dict(k=a.k, n_prompts=len(prompts), max_tokens=a.max_tokens, batched_seconds=round(t_batched, 3),
               per_sample_seconds=round(t_single, 3), ratio=round(t_single / t_batched, 2),
               batched_tokens=toks(batched), per_sample_tokens=toks(single), baseline='one generate call per sample',
               distinct_samples_per_prompt=sum(len({c.text for c in r}) for r in batched) / len(batched))
    print(f"batched {t_batched:.1f} s vs one call per sample {t_single:.1f} s -> {out['ratio']}x")
    print(json.dumps(out))


if __name__ == '__main__':
    main()
