# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel where there is no NVIDIA driver (a bare `torch` pulls a multi-GB CUDA build);
# with a GPU, pip resolves the same release with CUDA. Override with `make TORCH_SPEC=...`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast repro bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/vaeflow run

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# DVC deletes a stage's outputs before running its command: check the params first (docs/dvc.md).
repro: $(STAMP)
	$(BIN)/vaeflow validate > /dev/null
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

clean:
	rm -rf data/prepared models metrics reports runs
