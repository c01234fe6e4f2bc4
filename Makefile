# btc_ai — `make train` and `make test` set themselves up (a .venv here) and run.
#
# TORCH_SPEC chooses the PyTorch build installed before the project (any pip spec). The default pins the
# CPU wheel these machines carry on disk (fast set-up). Training runs on CPU: no code path uses a GPU.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.btc_ai-installed
PYTEST_ARGS ?=
# test processes (pytest-xdist): most tests wait on subprocesses, servers and signals, so 2 cores run two at once
# well; tests sharing a costly resource run in one process (@pytest.mark.xdist_group, --dist loadgroup)
TEST_WORKERS ?= 2
XDIST      := -n $(TEST_WORKERS) --dist loadgroup

.PHONY: help setup constraints train test test-fast e2e lint ui server serve bench docs clean

help:
	@echo "make train   set up, then train on the built-in default data (local MLflow store in mlruns/)"
	@echo "make test    set up, then run the test suite"
	@echo "make test-fast  the suite without the slow tests (trainings, servers, notebook, browser, btc-ai processes)"
	@echo "make ui      MLflow UI on the local store   make bench  benchmarks   make lint  ruff"
	@echo "make docs    the documentation site in site/ (MkDocs, --strict: a broken link fails)"
	@echo "make server  a team MLflow server on 127.0.0.1 (PostgreSQL, proxied artifacts, basic auth; needs postgresql)"
	@echo "make e2e     the MLflow UI checked in headless Chromium (screenshots in test-output/ui/)"
	@echo "make serve MODEL=models:/btc-ai-scalping@champion [PORT=5001]  the model's REST API on 127.0.0.1"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,server,cluster]"
	@touch $@

# constraints.txt from this environment (run it after a full `make test` passed on new versions); torch is left
# to TORCH_SPEC
constraints: $(STAMP)
	@{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(torch|btc_ai)=='; } \
		> constraints.txt.new && mv constraints.txt.new constraints.txt

train: $(STAMP)
	$(BIN)/btc-ai train $(TRAIN_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# the loop for changing code: everything not marked slow (a training, a server, a notebook, a browser, a
# btc-ai process) or e2e
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not e2e" $(PYTEST_ARGS)

# needs Debian's chromium (apt-get install chromium); nothing downloads a browser. `make test` runs it too
# where Chromium is installed and says why it skips where it is not.
e2e: $(STAMP)
	@command -v chromium >/dev/null || test -x /usr/bin/chromium || \
		{ echo "make e2e needs Chromium: apt-get install chromium"; exit 1; }
	$(BIN)/python -m pytest -m e2e tests/test_ui_e2e.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check btc_ai tests benchmarks

ui: $(STAMP)
	@mkdir -p mlruns
	@# one worker and no job runner: several uvicorn workers and MLflow's job processes are slow to start on few cores
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root ./mlruns/artifacts --host 127.0.0.1 --port $${PORT:-5000} --workers 1

# a team server to try (docs/team-server.md): PostgreSQL in a temporary folder (as nobody when root),
# mlflow server with proxied artifacts and basic auth, one worker, no job runner; Ctrl-C stops both
server: $(STAMP)
	$(BIN)/python -m btc_ai.tracking.team_server team-server --port $${PORT:-5000}

# `mlflow models serve` with the venv's bin first on PATH (MLflow starts uvicorn by name: without it, "uvicorn ...
# return code 127"), this venv as the model's environment, on 127.0.0.1; the store is MLFLOW_TRACKING_URI or mlruns/
serve: $(STAMP)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///mlruns/mlflow.db} \
		$(BIN)/python -m btc_ai.tracking.serving "$(MODEL)" --port $${PORT:-5001}

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks.run

# the site of README's docs/ pages; --strict turns every warning (a broken link or anchor, a page left out of
# the nav) into a failure. NO_MKDOCS_2_WARNING quiets Material's banner about MkDocs 2, which is no warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build site *.egg-info
