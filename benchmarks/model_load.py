"""Model load time: dequantising the PyPI-shipped GGUF through transformers vs our checksummed safetensors cache.

Each measurement runs in a fresh subprocess (no warm imports or page cache from the other path within one process).
Usage: python benchmarks/model_load.py [--models smollm2-135m-instruct gemma3-270m]
The last line is one JSON object: per model gguf_seconds, cache_seconds, ratio.
"""
import argparse, json, subprocess, sys

GGUF = """
import time, torch
from mixexperts.models import LOCAL_MODELS, gguf_path
from transformers import AutoModelForCausalLM, AutoTokenizer
p = gguf_path(LOCAL_MODELS['{m}'])
t = time.perf_counter()
tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
print(time.perf_counter() - t)
"""
CACHE = """
import time
from mixexperts.backends import HFBackend
from mixexperts.models import resolve_model
resolve_model('{m}')  # make sure the cache exists (converted once, outside the timing)
t = time.perf_counter()
b = HFBackend('{m}')
print(time.perf_counter() - t)
"""


def run(code):
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env={'HF_HUB_OFFLINE': '1', **__import__('os').environ})
    if r.returncode: raise SystemExit(r.stderr[-2000:])
    return float(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', nargs='+', default=['smollm2-135m-instruct', 'gemma3-270m'])
    a = ap.parse_args()
    out = {}
    for m in a.models:
        cache = run(CACHE.format(m=m))   # first, so the conversion is not timed as a GGUF load
        gguf = run(GGUF.format(m=m))
        out[m] = dict(gguf_seconds=round(gguf, 2), cache_seconds=round(cache, 2), ratio=round(gguf / cache, 1))
        print(f"{m}: from GGUF {gguf:.1f} s, from the safetensors cache {cache:.1f} s (checksums verified) -> {gguf / cache:.1f}x")
    print(json.dumps(out))


if __name__ == '__main__':
    main()
