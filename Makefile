# process-tracker: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VERSION := $(shell $(PYTHON) -c "import json;print(json.load(open('plugin.json'))['version'])")
ZIP := dist/dss-plugin-process-tracker-$(VERSION).zip
PLUGIN_CODE := python-lib python-runnables webapps
STAMP := $(VENV)/.installed
# The dataiku-api-client releases that DSS 12, 13 and 14 ship (the main .venv pins 15.x from requirements-dev.txt).
# Inside DSS the plugin runs with that DSS's own client: the DSS-facing suites run once with each of them.
OLD_CLIENTS := 12.6.4 13.5.6 14.7.5
OLD_MAJORS := $(foreach v,$(OLD_CLIENTS),$(firstword $(subst ., ,$(v))))
OLD_STAMPS := $(foreach m,$(OLD_MAJORS),.venv-dss$(m)/.installed)
# The suites that drive DSS through dataikuapi: listing, re-checks and actions for every kind, every macro run as
# DSS runs it, the webapp backend's routes, the CLI, the client itself and the simulator it talks to. (The fault
# matrix and the host-side macro tests run with the pinned client only: they are the slowest and test no client
# call the suites below do not.) $(wildcard) keeps a suite that is not there yet from failing the run.
DSS_API_TESTS := $(wildcard $(addprefix tests/integration/,test_dss_client.py test_dss_runtime.py test_simulator.py \
	test_simulator_activities.py test_kinds.py test_activities.py test_actions.py test_macros.py \
	test_scope_validation.py test_webapp_backend.py test_webapp_actions.py test_cli_activities.py test_security.py))

.PHONY: help demo test test-unit test-clients lint plugin bench clean chromium screenshots

help:
	@echo "make demo    start the simulated DSS, a fleet of DSS-shaped processes and the monitoring webapp"
	@echo "make test    lint, then every test (unit, integration over HTTP, real processes, headless Chromium)"
	@echo "make test-unit  the fast loop: tests/unit only (pure: no server, no process, no browser; seconds)"
	@echo "make test-clients  only the DSS-facing suites, once per old dataiku-api-client ($(OLD_CLIENTS))"
	@echo "make lint    ruff, and a Python 3.9 compatibility check of the plugin code (vermin)"
	@echo "make plugin  build $(ZIP)"
	@echo "make bench   run the benchmarks under bench/ (installs prometheus-process-exporter; figures go to bench/RESULTS.md by hand)"
	@echo "make screenshots  refresh docs/screenshots/ (the README's pictures) from the browser tests"

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

# .venv-dss12 etc.: requirements-dev.txt with the client pin replaced (no browser, no linters: not needed there)
.venv-dss%/.installed: requirements-dev.txt pyproject.toml
	test -x .venv-dss$*/bin/python || $(PYTHON) -m venv .venv-dss$*
	grep -vE '^(dataiku-api-client|playwright|greenlet|ruff|vermin)==' requirements-dev.txt > .venv-dss$*/requirements.txt
	echo "dataiku-api-client==$(filter $*.%,$(OLD_CLIENTS))" >> .venv-dss$*/requirements.txt
	.venv-dss$*/bin/python -m pip install --disable-pip-version-check -q -r .venv-dss$*/requirements.txt
	.venv-dss$*/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

chromium:
	@bash dev/ensure-chromium.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin --no-tips --violations --eval-annotations -t=3.9- $(PLUGIN_CODE)

# The full suite on the pinned 15.x client, then the DSS-facing suites on each old client; a summary at the end.
test: $(STAMP) chromium lint $(OLD_STAMPS)
	@bash dev/ensure-prometheus.sh
	@bash dev/test_matrix.sh "$(PY)" "$(DSS_API_TESTS)" $(OLD_MAJORS) -- $(PYTEST_ARGS)

# The fast loop while coding: tests/unit (tests/integration: simulator over HTTP, real processes, Prometheus, the
# Kubernetes simulator; tests/browser: headless Chromium) run with `make test`.
test-unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

test-clients: $(OLD_STAMPS)
	@bash dev/test_matrix.sh "" "$(DSS_API_TESTS)" $(OLD_MAJORS) -- $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m dev.demo $(DEMO_ARGS)

screenshots: $(STAMP) chromium
	PT_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/browser/test_browser.py tests/browser/test_browser_degraded.py

# bench/exporter.py runs beside Debian's prometheus-process-exporter: installed here (as root), not by `make test`
bench: $(STAMP)
	@bash dev/ensure-process-exporter.sh
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

plugin: $(ZIP)

$(ZIP): plugin.json $(shell find $(PLUGIN_CODE) code-env resource -type f -not -path '*/__pycache__/*' 2>/dev/null)
	$(PYTHON) dev/build_plugin.py $@

clean:
	rm -rf $(VENV) .venv-dss* dist .pytest_cache
