# The two commands: `make run` (baseline scenario, outputs and figures) and `make test` (the test suite);
# `make bench` measures speed, scaling and memory into runs/bench/ (BENCH_ARGS=--quick for a short one).
# All create .venv with a Python >= 3.12 and install the project with its dev extras when needed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
SEED ?= 1
OUT ?= runs/baseline-seed$(SEED)
BENCH_ARGS ?=
EXECUTE ?=

.PHONY: install run test test-fast lint bench lock golden clean docs

install: $(STAMP)

# Installs the exact versions of constraints.txt (what the tests passed with); `make lock` refreshes them.
$(STAMP): pyproject.toml constraints.txt
	@set -e; \
	if [ ! -x "$(PY)" ]; then \
	  found=""; \
	  for c in python3.12 python3.13 python3.14 python3 python \
	           $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null); do \
	    if command -v "$$c" >/dev/null 2>&1 && "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	      found="$$c"; break; fi; \
	  done; \
	  if [ -z "$$found" ]; then echo "error: Python >= 3.12 not found; install python3.12 (or pyenv install 3.12) and retry" >&2; exit 1; fi; \
	  echo "creating $(VENV) with $$found"; \
	  "$$found" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install --quiet --upgrade pip; \
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'; \
	touch $(STAMP)

run: install
	$(VENV)/bin/abm run baseline --seed $(SEED) --out $(OUT) --force
	$(VENV)/bin/abm overview $(OUT)
	$(VENV)/bin/abm report $(OUT)

test: install
	$(VENV)/bin/python -m pytest -q

test-fast: install
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

# The documentation site (mkdocs.yml) into site/, offline, warnings as errors; EXECUTE=1 runs the tutorial
# notebooks first so that their tables and figures are on the site.
docs: install
	NO_MKDOCS_2_WARNING=1 DOCS_EXECUTE=$(if $(filter 1 true yes,$(EXECUTE)),true,false) \
	  $(VENV)/bin/mkdocs build --strict --site-dir site

bench: install
	$(VENV)/bin/abm bench --out runs/bench --force $(BENCH_ARGS)

# Re-resolve the newest versions pyproject.toml allows in a clean environment and pin them in constraints.txt;
# then run `make test` and commit constraints.txt if it passes.
lock: install
	rm -rf .lock-venv
	"$$($(PY) -c 'import sys; print(sys._base_executable)')" -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev]'
	{ echo "# Exact versions the tests passed with; make install uses them. Refresh: make lock (then make test)."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -i '^compute-market-abm'; } > constraints.txt
	rm -rf .lock-venv build
	rm -f $(STAMP)

# Rewrite tests/data/golden_baseline_seed1.json after a deliberate change of the model (see README).
golden: install
	$(PY) -m analysis.experiments.golden update

clean:
	rm -rf runs .pytest_cache .hypothesis
