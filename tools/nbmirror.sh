#!/usr/bin/env bash
# Edit a notebook as a jupytext percent script, then write it back keeping its cell ids (so the cell markers in
# the exported modules do not change).
#   tools/nbmirror.sh out nbs/07_search.ipynb DIR   writes DIR/07_search.py
#   tools/nbmirror.sh in  nbs/07_search.ipynb DIR   updates the notebook from DIR/07_search.py, nbdev_clean, nbdev_export
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="$here/.venv/bin"
mode=$1; nb=$2; dir=${3:-/tmp/nbpy}
mkdir -p "$dir"
py="$dir/$(basename "${nb%.ipynb}").py"
case "$mode" in
  out) "$bin/jupytext" --quiet --from ipynb --to py:percent -o "$py" "$nb"; echo "$py" ;;
  in)  "$bin/jupytext" --quiet --update --from py:percent --to ipynb -o "$nb" "$py"
       "$bin/nbdev_clean" --fname "$nb"
       (cd "$here" && "$bin/nbdev_export") ;;
  *) echo "usage: $0 out|in NOTEBOOK [DIR]" >&2; exit 2 ;;
esac
