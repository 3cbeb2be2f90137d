# Two commands: `make run` installs and starts the server; `make test` installs what tests need, builds the docs and runs
# them all.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint docs install install-test install-system fuzz bench soak

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
	$(BIN)/ruff check wsgi_ws tests bench fuzz app.py gunicorn.conf.py
	$(BIN)/ruff format --check wsgi_ws tests bench fuzz app.py gunicorn.conf.py
	$(BIN)/mypy

# The docs site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken link, a docstring that does not
# parse, a cross-reference that resolves to nothing) into a failure. `.venv/bin/mkdocs serve` to read it while editing.
# NO_MKDOCS_2_WARNING: Material's end-of-life banner, printed on every build, is not a warning about these docs.
# Not --quiet: it hides the warnings from --strict too, and the build then passes whatever it finds.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: lint docs
	$(BIN)/python -m pytest

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
