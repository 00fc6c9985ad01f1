# process-tracker: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VERSION := $(shell $(PYTHON) -c "import json;print(json.load(open('plugin.json'))['version'])")
ZIP := dist/dss-plugin-process-tracker-$(VERSION).zip
PLUGIN_CODE := python-lib python-runnables webapps
STAMP := $(VENV)/.installed

.PHONY: help demo test lint plugin bench clean chromium screenshots

help:
	@echo "make demo    start the simulated DSS, a fleet of DSS-shaped processes and the monitoring webapp"
	@echo "make test    lint, then every test (unit, integration over HTTP, real processes, headless Chromium)"
	@echo "make lint    ruff, and a Python 3.9 compatibility check of the plugin code (vermin)"
	@echo "make plugin  build $(ZIP)"
	@echo "make bench   run the benchmarks under bench/ (figures go to bench/RESULTS.md by hand)"
	@echo "make screenshots  refresh docs/screenshots/ (the README's pictures) from the browser tests"

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

chromium:
	@bash dev/ensure-chromium.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin --no-tips --violations --eval-annotations -t=3.9- $(PLUGIN_CODE)

test: $(STAMP) chromium lint
	@bash dev/ensure-prometheus.sh
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m dev.demo $(DEMO_ARGS)

screenshots: $(STAMP) chromium
	PT_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/test_browser.py tests/test_browser_degraded.py

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

plugin: $(ZIP)

$(ZIP): plugin.json $(shell find $(PLUGIN_CODE) code-env resource -type f -not -path '*/__pycache__/*' 2>/dev/null)
	$(PYTHON) dev/build_plugin.py $@

clean:
	rm -rf $(VENV) dist .pytest_cache
