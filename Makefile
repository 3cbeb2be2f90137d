# Two commands: `make run` installs and starts the server; `make test` installs what tests need and runs them all.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint install install-test install-browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt

install-test: install install-browser
	$(BIN)/pip install --quiet -r requirements-test.txt

# The browser tests drive Debian's chromium; as root (CI) it is installed here, otherwise they are skipped with a note.
install-browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: $(CHROMIUM) missing and not root: run 'sudo apt-get install chromium' for the browser tests"; fi; \
	fi

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

lint: install-test
	$(BIN)/ruff check wsgi_ws tests bench app.py gunicorn.conf.py
	$(BIN)/ruff format --check wsgi_ws tests bench app.py gunicorn.conf.py
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest
