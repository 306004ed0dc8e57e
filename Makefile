# Quick start: `make demo` runs the app on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv migrate worker serve browser screenshots clean llm-server

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

# A local OpenAI-compatible LLM server (llama.cpp via llama-cpp-python; docs/llm.md "Serving
# engines"). It compiles llama.cpp (~30 CPU-minutes), so the built wheel is cached in
# $(WHEELS) and built with `pip wheel` only when absent. The tests need it; `make demo` does not.
WHEELS ?= $(HOME)/.cache/grag/wheels
LLM_SERVER_STAMP := $(VENV)/.llm-server
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama-cpp-python\[server\]==//p' requirements-server.txt)

llm-server: $(LLM_SERVER_STAMP)

$(LLM_SERVER_STAMP): requirements-server.txt | $(STAMP)
	@mkdir -p $(WHEELS)
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
	  $(PIP) wheel --no-deps --wheel-dir $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install --quiet --find-links $(WHEELS) -r requirements-server.txt
	touch $(LLM_SERVER_STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput

demo: venv migrate
	$(PY) manage.py demo

test: venv browser llm-server
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
