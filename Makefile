# Two commands: `make run` installs and starts the server; `make test` installs what tests need and runs them all.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install install-test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt

install-test: install
	$(BIN)/pip install --quiet -r requirements-test.txt

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

lint: install-test
	$(BIN)/ruff check wsgi_ws tests bench app.py gunicorn.conf.py
	$(BIN)/ruff format --check wsgi_ws tests bench app.py gunicorn.conf.py
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest
