# svdablate: `make demo` and `make test` are the two commands of a fresh set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned (the releases on this machine's disk); on a GPU machine override
# them, e.g. `make TORCH_SPEC="torch torchvision" demo`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
RESULTS ?= results
# Bytecode: make's commands write each module's .pyc the first time one imports it (Python's
# default). Where PYTHONDONTWRITEBYTECODE is set (this VM), every process had recompiled every
# module it imports that had no .pyc: svdablate's and the tests' in each Ray worker, driver and
# pytest worker; uv's --compile-bytecode compiled the venv's 18,000 modules at install (~36 s of
# CI's 2 cores) for the ~7,500 the suite imports. Fresh clones, one CI each, back to back: 608 s
# and 1,183 CPU-s of the machine before, 557 s and 1,081 after (docs/benchmarks.md).
export PYTHONDONTWRITEBYTECODE :=
PYTEST_ARGS ?=

.PHONY: install demo test test-unit test-e2e test-deploy test-fast lint format bench docs clean

# uv installs everything: from its cache (~/.cache/uv, hard links) a fresh venv took 91-108 s here,
# where pip's torch and its CUDA wheels (~3 GB, unpacked each time) made it 223 s (both under a
# load of 16-18 on 2 cores). torch first, in a step of its own, as pip did: the rest then keeps
# its sympy/mpmath (together, uv picks mpmath 1.4 and so sympy 1.14.0rc1).
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python $(TORCH_SPEC)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/svdablate run --preset demo --results-dir $(RESULTS)

# `make test` is the whole suite CI runs: tests/unit/ (every unit test, every preset's smoke study)
# and tests/e2e/ (the end-to-end scenarios: a killed driver, a lost node, a server outage,
# concurrent studies, real Ray and MLflow processes), in one pool of pytest-xdist workers: the
# end-to-end tests wait on Ray, MLflow and subprocesses while unit tests use the cores. Four
# workers on any core count (`make test TEST_WORKERS=0`: one process). `loadgroup` keeps the tests
# that share a cached full-size network on one worker. The deployment scenarios (marked `deploy`)
# are `make test-deploy`; `make test-unit` and `make test-e2e` run one folder each.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: install
	$(PYTEST) -m "not deploy" $(PYTEST_ARGS)

test-unit: install
	$(PYTEST) -m "not e2e" $(PYTEST_ARGS)

test-e2e: install
	$(PYTEST) -m "e2e and not deploy" $(PYTEST_ARGS)

# The deployment scenarios (a worker node blind to the storage, a Ray job, the MLflow UI in
# headless Chromium, an MLflow server on PostgreSQL, the SLURM script: ~10 min on 2 cores) are marked
# `deploy` and kept out of CI's 10 minutes; `make test-deploy` runs them (it installs chromium and
# postgresql).
test-deploy: install
	@if ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium postgresql >/dev/null; fi
	$(PYTEST) -m deploy $(PYTEST_ARGS)

test-fast: install
	$(PYTEST) -m "not slow and not e2e" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check svdablate tests benchmarks scripts
	$(BIN)/ruff format --check svdablate tests benchmarks scripts

format: install
	$(BIN)/ruff format svdablate tests benchmarks scripts
	$(BIN)/ruff check --fix svdablate tests benchmarks scripts

bench: install
	$(BIN)/python benchmarks/metalayer_speed.py
	$(BIN)/python benchmarks/orchestration_overhead.py
	$(BIN)/python benchmarks/telemetry_overhead.py

# docs/config.md's field table is generated from TrialConfig, docs/claims.md from the claims'
# data (svdablate/report/claims/); a test checks each is current.
docs: install
	$(BIN)/python -c "from svdablate.report.claims.doc import write_claims_doc; write_claims_doc()"
	$(BIN)/python -c "import re, subprocess, pathlib; p = pathlib.Path('docs/config.md'); \
	table = subprocess.run(['$(BIN)/svdablate', 'fields', '--markdown'], check=True, \
	capture_output=True, text=True).stdout; \
	p.write_text(re.sub(r'(<!-- trial-config:begin -->\n).*?(<!-- trial-config:end -->)', \
	lambda m: m[1] + table + m[2], p.read_text(), flags=re.S))"

clean:
	rm -rf $(RESULTS) .pytest_cache .ruff_cache
