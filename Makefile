# Two commands for a newcomer: `make demo` and `make test`. Each creates the virtualenv if it
# is missing and installs the pinned dependencies first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1

.PHONY: demo test ui bench study study-refusals mixing install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/mm-curation demo --home .demo

# Three pytest processes side by side (see tests/run_suite.sh); fails if any fails.
test: $(STAMP)
	PYTHON=$(BIN)/python bash tests/run_suite.sh

# `make ui` opens the demo's home; `make ui MM_HOME=$(CURDIR)/.study` the study's.
MM_HOME ?= $(CURDIR)/.demo
ui: $(STAMP)
	MM_HOME=$(MM_HOME) DAGSTER_HOME=$(MM_HOME)/dagster_home \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Optional, like `make bench`: the curation study (every recipe over three seeds, ablation report).
study: $(STAMP)
	$(BIN)/mm-curation study --home .study

# Optional: the study with half of the records' answers refused (the mix where the oracle's gap is
# established; README, "Half the answers refused"), in its own home. About an hour on 2 cores.
study-refusals: $(STAMP)
	$(BIN)/mm-curation study --home .study-refusals --mix refusals

# Optional, after `make study`: data mixing on the study's home (domain experts, every subset
# soup, the mixing table, the proxy check against 8 real mixtures). Measured: 76 min on 2 cores.
mixing: $(STAMP)
	$(BIN)/mm-curation mixing --home .study --spread 8

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_json_array.py
	$(BIN)/python benchmarks/bench_semdedup.py
	$(BIN)/python benchmarks/bench_embeddings.py
	$(BIN)/python benchmarks/bench_ray.py
	$(BIN)/python benchmarks/bench_recompute.py
	$(BIN)/python benchmarks/bench_eval_backends.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_merge.py
