#!/usr/bin/env bash
# Convert jupytext percent-format scripts into notebooks under nbs/ (authoring helper).
# Usage: tools/py2nb.sh SRC.py [SRC.py ...]   (writes nbs/<name>.ipynb, then nbdev_clean)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="$here/.venv/bin"
for src in "$@"; do
  out="$here/nbs/$(basename "${src%.py}").ipynb"
  "$bin/jupytext" --quiet --from py:percent --to ipynb --update-metadata '{"kernelspec":{"display_name":"python3","language":"python","name":"python3"}}' -o "$out" "$src"
  "$bin/nbdev_clean" --fname "$out"
done
