# Two commands: `make run` installs and starts the server; `make test` installs what tests need, builds the docs and runs
# them all.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium

# The Python versions wsgi-ws supports (pyproject.toml's classifiers name the same; tests/test_packaging.py checks).
# `make test` runs the whole suite on $(PYTHON) in $(VENV), and at the same time the unit, socket and e2e tiers (not the
# browser tier, not the benchmark's smoke runs) on each other version, each in its own venv (.venv-3.10, ...) made from
# pyenv's interpreter. A version whose interpreter is missing is skipped with a note; under CI (CI set) it fails.
PYTHON_VERSIONS := 3.10 3.11 3.12 3.13
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
OTHER_VERSIONS := $(filter-out $(PYTHON_VERSION),$(PYTHON_VERSIONS))
OTHER_TIERS := -m "not browser" --ignore-glob="tests/test_bench_*smoke.py"
PYENV_ROOT ?= $(HOME)/.pyenv
# Where each other version's pytest output goes while the main suite prints to the terminal.
MATRIX_LOGS := test-artifacts/versions

.PHONY: run test lint docs install install-test install-system fuzz bench soak test-versions

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt

# The tests include the benchmark's smoke run (tests/test_bench_smoke.py), so they need its load generator and peers.
install-test: install install-system
	$(BIN)/pip install --quiet -r requirements-test.txt -r requirements-bench.txt -r requirements-docs.txt

# Browser, proxy, TLS and hub tests drive Debian's chromium, nginx, openssl and redis-server. As root (CI) they are
# installed here; otherwise those tests are skipped with a note (and the browser and nginx ones fail under CI=true).
install-system:
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: missing$$missing and not root: 'sudo apt-get install$$missing' for the browser/nginx/TLS/hub tests"; fi; \
	fi

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

lint: install-test
	$(BIN)/ruff check wsgi_ws tests bench fuzz docs/griffe_roles.py app.py gunicorn.conf.py
	$(BIN)/ruff format --check wsgi_ws tests bench fuzz docs/griffe_roles.py app.py gunicorn.conf.py
	$(BIN)/mypy

# The docs site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken link, a docstring that does not
# parse, a cross-reference that resolves to nothing) into a failure. `.venv/bin/mkdocs serve` to read it while editing.
# NO_MKDOCS_2_WARNING: Material's end-of-life banner, printed on every build, is not a warning about these docs.
# Not --quiet: it hides the warnings from --strict too, and the build then passes whatever it finds.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The other versions run in the background, their output in $(MATRIX_LOGS)/VERSION.log (printed whole if they fail),
# while this one runs the same tiers; each test binds its own free loopback ports and makes its own temporary folders,
# so the runs do not meet. Then, alone on the machine as before, this version's browser tier and benchmark smoke runs
# (they drive Chromium and load generators against time limits).
BENCH_SMOKE := $(wildcard tests/test_bench_*smoke.py)
test: lint docs
	@mkdir -p $(MATRIX_LOGS); rm -f $(MATRIX_LOGS)/*.log; pids=""; \
	for version in $(OTHER_VERSIONS); do \
	  $(MAKE) --no-print-directory test-py$$version > $(MATRIX_LOGS)/$$version.log 2>&1 & pids="$$pids $$!"; \
	done; \
	echo "Python $(PYTHON_VERSION): the unit, socket and e2e tiers here, and on $(OTHER_VERSIONS) at the same time ($(MATRIX_LOGS)/)"; \
	$(BIN)/python -m pytest $(OTHER_TIERS); status=$$?; \
	set -- $$pids; \
	for version in $(OTHER_VERSIONS); do \
	  wait $$1 || { status=1; cat $(MATRIX_LOGS)/$$version.log; echo "Python $$version: FAILED, above ($(MATRIX_LOGS)/$$version.log)"; }; \
	  shift; \
	done; \
	echo "Python $(PYTHON_VERSION): the browser tier, then the benchmark smoke runs"; \
	$(BIN)/python -m pytest -m browser || status=1; \
	$(BIN)/python -m pytest $(BENCH_SMOKE) || status=1; \
	for version in $(OTHER_VERSIONS); do \
	  echo "Python $$version (unit, socket, e2e): $$(grep -E '[0-9]+ (passed|failed)|no tests ran|^note' $(MATRIX_LOGS)/$$version.log | tail -n 1)"; \
	done; \
	exit $$status

# All the versions' unit, socket and e2e tiers, one after another (make test-py3.12 for one).
test-versions: $(addprefix test-py,$(OTHER_VERSIONS))

# The interpreter for version $(1): pyenv's, else the newest in its versions folder, else python$(1) on PATH.
interpreter = { prefix=$$(pyenv prefix $(1) 2>/dev/null) && [ -x "$$prefix/bin/python" ] && echo "$$prefix/bin/python"; } \
	|| { ls -d $(PYENV_ROOT)/versions/$(1).*/bin/python 2>/dev/null | sort -V | tail -n 1 | grep .; } || command -v python$(1)

test-py%:
	@python=$$($(call interpreter,$*)); \
	if [ -z "$$python" ]; then \
	  if [ -n "$$CI" ]; then echo "error: no Python $* (pyenv install $*): CI tests every version in PYTHON_VERSIONS" >&2; exit 1; fi; \
	  echo "note: no Python $* (pyenv install $*, or python$* on PATH): its tests are skipped"; exit 0; \
	fi; \
	set -e; \
	[ -x .venv-$*/bin/python ] || $$python -m venv .venv-$*; \
	.venv-$*/bin/pip install --quiet -r requirements.txt -r requirements-test.txt; \
	.venv-$*/bin/python -m pytest $(OTHER_TIERS)

# Coverage-guided fuzzing of the handshake and frame path (atheris); FUZZ_SECONDS to change the duration.
FUZZ_SECONDS ?= 300
fuzz: install-test
	$(BIN)/pip install --quiet atheris==3.0.0
	cd /tmp && $(CURDIR)/$(BIN)/python $(CURDIR)/fuzz/fuzz_protocol.py -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1

# The benchmark suite against the peers (bench/README.md); BENCH_ARGS=--quick for the smoke run.
bench: install
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/fanout.py $(BENCH_ARGS)
	$(BIN)/python bench/recovery.py $(BENCH_ARGS)

# The soak (bench/soak.py): 10,000 clients with pings for 10 minutes, 1% misbehaving; about 12 minutes, alone on the machine.
soak: install
	$(BIN)/pip install --quiet -r requirements-bench.txt
	ulimit -n 20000 && $(BIN)/python bench/soak.py $(BENCH_ARGS)
