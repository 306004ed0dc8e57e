# Quick start: `make demo` runs the app on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv migrate worker serve browser screenshots clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-test.txt
	$(PIP) install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# Debian's Chromium for browser tests (never a downloaded browser); skipped when present.
# axe-core (the accessibility check the browser tests inject) from package-lock.json.
browser: node_modules/.package-lock.json
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "browser tests need Debian's chromium: sudo apt-get install chromium"; fi; }

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

# Regenerate docs/img/*.png (report, a job, a system page at 1280 px) from the browser tests.
screenshots: venv browser
	DOCS_SCREENSHOTS=1 $(VENV)/bin/pytest tests/e2e/test_browser_staff.py -q -p no:cacheprovider

migrate: venv
	$(PY) manage.py migrate --noinput

demo: venv migrate
	$(PY) manage.py demo

test: venv browser
	$(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .

test-fast: venv
	$(VENV)/bin/pytest -m "not slow and not browser"

worker: venv
	$(VENV)/bin/celery -A grag_site worker -Q cpu,gpu --loglevel=INFO --concurrency=1

serve: venv migrate
	$(PY) manage.py runserver 127.0.0.1:8000

clean:
	rm -rf $(VENV) node_modules var/*.sqlite3 var/test-artifacts
