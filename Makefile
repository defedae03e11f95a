# ImagePipe — every target is idempotent; a fresh machine needs only Python 3.11+, make and apt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
CHROMIUM ?= /usr/bin/chromium
PYTEST_ARGS ?=

.PHONY: install install-dev browser run serve test lint bench clean lock

install: $(VENV)/.runtime-installed

$(VENV)/.runtime-installed: requirements.txt lambda_src/requirements.txt lambda_src/requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c lambda_src/requirements.lock
	touch $@

install-dev: $(VENV)/.dev-installed

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt -c lambda_src/requirements.lock
	touch $@

# Debian's Chromium for the browser tests (Playwright never downloads its own browser here).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@$(CHROMIUM) --version

run: install
	$(BIN)/streamlit run streamlit_app.py

serve: install
	$(PY) -m pipeline serve

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml

test: install-dev browser lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install-dev
	$(PY) -m pipeline.bench
	$(PY) -m pipeline.bench.encode_costs --write

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

# Known-vulnerability scan of the runtime + Lambda dependencies (docs/reliability.md). Not part of
# `make test`: it needs pypi.org's JSON API to know the pinned versions; --strict makes it fail
# (not pass vacuously) when any package cannot be audited, e.g. on a machine with a private mirror.
.PHONY: audit
audit: install-dev
	$(BIN)/pip-audit --strict --progress-spinner off -r requirements.txt -r lambda_src/requirements.txt

# lambda_src/requirements.lock: the exact versions the Lambda bundle ships and the venv installs
# (scripts/lock_lambda.py). Run after changing any requirements file.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) scripts/lock_lambda.py

# Lambda deployment package (manylinux aarch64 wheels for CPython 3.12) -> build/lambda, build/lambda.zip
# Bytecode for the runtime is compiled by python3.12 on PATH, or PY312=/path/to/python3.12.
.PHONY: package
package: install-dev
	scripts/package_lambda.sh $(if $(PY312),--bytecode $(PY312))
