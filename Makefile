# Local Telemetry. `make run` serves the console; `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint format soak bench screenshots audit clean chromium prometheus

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt constraints-dev.txt sdk/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check -c constraints-dev.txt -e sdk
	@touch $(STAMP)

run: install
	$(PY) -m console serve

# Browser tests need Debian's chromium; install it when missing (root on a fresh machine).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

test: install chromium prometheus lint
	$(PY) -m pytest

# The monitoring tests run Debian's prometheus and promtool; install them when missing.
prometheus:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; fi; }

test-fast: install
	$(PY) -m pytest -x -q -m "not browser and not reliability"

lint: install
	$(PY) -m ruff check console sdk tests scripts migrations wsgi.py

format: install
	$(PY) -m ruff format console sdk tests scripts migrations wsgi.py

soak: install
	TELEMETRY_SOAK=1 $(PY) -m pytest -m "soak" -p no:cacheprovider

bench: install
	$(PY) scripts/bench/run_all.py

screenshots: install chromium
	$(PY) scripts/screenshots.py

audit: install
	$(PY) -m pip install -q pip-audit && $(PY) -m pip_audit -r constraints-dev.txt

clean:
	rm -rf $(VENV) build .pytest_cache
