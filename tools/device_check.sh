#!/usr/bin/env bash
# GPU check of mixexperts on one lent GPU machine (H200-class; Python 3.12, torch, transformers 5.x, peft and
# accelerate installed; no vLLM, no network, mixexperts NOT installed). ≤ 5 minutes. What it runs: tools/device_check.py
# (a. HF backend bf16 on the GPU vs fp32 on the CPU on 100 MMLU questions; b. k=5 samples × 20 prompts × 32 tokens;
# c. one LoRA training step; d. one population-search step with one resident base). Last line: one JSON object, `ok`.
#
# Here, once (writes only git-ignored files; the manifest and the data slice are committed):
#   PYTHONPATH=$PWD .venv/bin/python tools/device_check.py --prepare
#       -> .device/gguf.part1, .device/gguf.part2 (the shipped SmolLM2 GGUF, 98 MB, split in two ≤ 47 MiB halves),
#          tools/device_wheels/{fastcore,gguf}-*.whl (pure-Python packages the device image lacks:
#          pip download --no-deps --only-binary=:all: --python-version 3.12 --platform any fastcore==1.14.5 gguf==0.19.0),
#          tools/device_manifest.json (sha256 of each part, of the whole GGUF, and of the converted weights)
#   PYTHONPATH=$PWD .venv/bin/python tools/device_check.py --make-slice data/device/mmlu100.jsonl   (already committed)
#
# There: at most 64 MiB travels per call, so the model goes in two back-to-back calls (the machine keeps ignored
# files between calls only while it stays warm, ~30 s after a call; issue the second call at once):
#   call 1: run(carry=[".device/gguf.part1"], command="ls -l .device")
#   call 2: run(carry=[".device/gguf.part2", "tools/device_wheels"], timeout_s=420,
#               command="tools/device_check.sh --gguf-parts .device/gguf.part1 .device/gguf.part2 --out $OUT/device_check.json")
#   The parts are checked by sha256 against the manifest, joined, checked again, and converted by the package's own
#   convert_gguf; the converted weights are checked against the manifest's weights_sha256. `--model-dir DIR` takes
#   a transformers folder instead (checked the same way).
#
# Here, a rehearsal with the CPU playing the GPU (fp32 vs fp32 on CPU; --cpu-dtype bfloat16 for bf16, slow on CPU):
#   tools/device_check.sh --device cpu [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
extra=
if ! "$PY" -c 'import fastcore, gguf' 2>/dev/null; then
  if [ -d tools/device_wheels ]; then
    site=${TMPDIR:-/tmp}/mixexperts-device-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" tools/device_wheels/*.whl
    extra=":$site"
  else
    echo "error: fastcore/gguf missing and no tools/device_wheels (run tools/device_check.py --prepare here and carry it)" >&2; exit 2
  fi
fi
export PYTHONPATH="$PWD$extra${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$PY" tools/device_check.py "$@"
