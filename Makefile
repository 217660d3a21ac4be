# Two commands on a fresh machine: `make run` (install, index, start the assistant)
# and `make test` (install with test extras, run the tests).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1

.PHONY: install install-dev run ingest serve test test-llm lint eval eval-dev bench vectors ranker load clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	# torch is pinned to the CPU build; an unpinned one pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Ingest is incremental: when nothing changed it embeds nothing and returns in seconds.
ingest: install
	$(BIN)/rag ingest

run: ingest
	$(BIN)/rag serve --host 127.0.0.1 --port 7860

test: install-dev
	$(BIN)/python -m pytest -q --durations=8 -m "not llm_server"

# llm mode against a real OpenAI-compatible server (llama.cpp + gemma-3-270m, offline).
# llama-cpp-python builds from source the first time (4-11 min on 2 cores), then pip
# reuses its cached wheel. Portable CPU flags: a wheel built for the build machine's own
# instructions crashed (SIGILL) on another machine of the same kind.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
test-llm: install-dev
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -e '.[dev,llm-server]'
	$(BIN)/python -m pytest -q -m llm_server

lint: install-dev
	$(BIN)/ruff check rag ui tests bench eval
	$(BIN)/mypy rag ui
	$(BIN)/lint-imports

# The benchmark: every configuration side by side. The test split is the headline report
# (eval/reports/), the dev split (used for tuning) goes to eval/reports/dev/. The items on
# documents a user adds run when ../shared/local-regulations exists, on a second index
# that adds them (the embedding cache is shared).
LOCAL_REGS ?= ../shared/local-regulations
# STARD's labels on the 商标法 are the 2019 text, in force until 2026-12-31: reports are made
# as of a fixed date (the index too: `make eval` re-ingests as of it).
EVAL_AS_OF ?= 2026-12-07
eval: export RAG_AS_OF := $(EVAL_AS_OF)
eval: ingest
	$(BIN)/rag eval --dataset eval/test.jsonl --out eval/reports \
	  --dump-answers eval/reports/answers-hybrid.jsonl --trec eval/reports/trec
	$(BIN)/rag eval --dataset eval/dev.jsonl --out eval/reports/dev
	$(BIN)/rag eval --dataset eval/blind-dev.jsonl --config bm25 --config dense --config hybrid-rrf \
	  --config hybrid --out eval/reports/blind-dev
	$(BIN)/rag eval --dataset eval/stard-dev.jsonl --config bm25 --config dense --config hybrid-rrf \
	  --config hybrid --out eval/reports/stard-dev
	$(BIN)/rag eval --dataset eval/blind-dev2.jsonl --config bm25 --config dense --config hybrid-rrf \
	  --config hybrid --out eval/reports/blind-dev2
	$(BIN)/python eval/ablation.py --dataset eval/test.jsonl --out eval/reports/ablation.md
	@if [ -d "$(LOCAL_REGS)" ]; then \
	  RAG_DATA_DIR=.rag-local $(BIN)/rag ingest --quiet "$(LOCAL_REGS)" && \
	  RAG_DATA_DIR=.rag-local $(BIN)/rag eval --dataset eval/local-dev.jsonl \
	    --dataset eval/local-test.jsonl --config naive --config hybrid --out eval/reports/local; \
	else echo "$(LOCAL_REGS) not found: items on user-added documents skipped"; fi

eval-dev: ingest
	$(BIN)/rag eval --dataset eval/dev.jsonl

# The shipped vectors of the bundled corpus (corpus/vectors/): run after changing the corpus,
# the parser or the chunker, and commit what changed (tests/test_vectors.py checks coverage).
vectors: install
	$(BIN)/rag vectors export

# The learned ranking stage (rag/data/ranker.json) from the development sets, with its
# cross-validated report (eval/reports/ranker.md): run after changing features or the corpus.
ranker: ingest
	$(BIN)/python -m rag.bench.train_ranker

bench: ingest
	$(BIN)/python bench/bench.py

# 16 clients × 50 requests against `rag serve` on a free loopback port (bench/out/load.md).
load: ingest
	$(BIN)/python bench/load.py --clients 16 --requests 50

clean:
	rm -rf .rag .rag-test .rag-regs .rag-local tests/artifacts
