# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A pinned release, installed first. Which build pip picks is the package index's: this project's index
# serves the CPU wheel; PyPI's Linux wheel bundles CUDA (GBs). Choose with `make TORCH_SPEC=...`, e.g.
# "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" (or .../whl/cu126 for a GPU).
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast test-slow repro bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/vaeflow run

# Every test, in two lanes. Each runs on 2 pytest-xdist workers: a module's tests stay in one worker (its
# module fixtures run once) and the modules that start Ray share one, so Rays never compete (tests/conftest.py).
# The slow lane prints its 30 slowest tests, so the time CI spends stays visible.
XDIST := -n 2 --dist loadgroup

test: test-fast test-slow

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(XDIST) --durations=30

# dvc.yaml's first stage validates params.yaml before DVC deletes any stage's outputs (docs/dvc.md).
repro: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

# What runs write. Some files there are tracked and must survive: models/tuned/README.md (models/tuned/ is a
# DVC dependency of pretrain, so a checkout needs it) and the metrics/ files committed with dvc.lock
# (.gitignore). So git deletes only what it does not track under these folders, ignored or not (-x); see
# what would go with `git clean -ndx -- $(OUTPUTS)`. Outside a git checkout it refuses rather than guess.
# runs/cpu (bench/cpu_runs.sh's hours of checkpointed benchmark runs) is not the pipeline's and stays.
OUTPUTS := data/prepared models metrics reports runs

clean:
	@git rev-parse --is-inside-work-tree > /dev/null 2>&1 || \
	  { echo "make clean: not a git checkout; it deletes only what git does not track" >&2; exit 1; }
	git clean -fdqx -e /runs/cpu -- $(OUTPUTS)
