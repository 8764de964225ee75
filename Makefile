# Switchboard developer and CI entry points.
#
#   make run    build web/ and the release binary, and serve both in dev mode on 127.0.0.1:3000
#   make test   cargo test --workspace, then the end-to-end suites (JS, Python, browser)
#   make e2e    only the end-to-end suites (builds the debug binary first)
#   make e2e-web  only the browser tests (web/ in Debian chromium, via playwright-core)
#   make lint   cargo fmt --check + cargo clippy -D warnings
#   make bench  side-by-side benchmark suite (release builds, Node baseline deps) → docs/benchmarks.md
#               (BENCH_PROFILE=full for the long one; BENCH_ARGS for more `loadgen suite` flags)
#
# The e2e suites find the server through SWITCHBOARD_BIN (default: the debug build).
# Redis/PostgreSQL for the multi-instance tests: SWITCHBOARD_TEST_REDIS_URL,
# SWITCHBOARD_TEST_DATABASE_URL; SWITCHBOARD_REQUIRE_BACKENDS=1 turns "skip" into "fail".

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO   ?= cargo
NPM     ?= npm
NODE    ?= node
PYTHON  ?= python3
VENV    ?= .venv
RUN_BIND ?= 127.0.0.1:3000

JS_DIR := tests/e2e/js
PY_DIR := tests/e2e/py
JS_STAMP := $(JS_DIR)/node_modules/.package-lock.json
PY_STAMP := $(VENV)/.e2e-requirements.stamp

SWITCHBOARD_BIN ?= $(CURDIR)/target/debug/switchboard
export SWITCHBOARD_BIN

.PHONY: help run web build build-release test test-rust e2e e2e-deps e2e-js e2e-py e2e-web lint fmt-check clippy clean-e2e bench bench-deps

help:
	@echo "targets: run | test | e2e | e2e-js | e2e-py | e2e-web | lint | build | build-release | web | clean-e2e | bench"

# ---------------------------------------------------------------------------
# Running

run: web build-release
	./target/release/switchboard serve --dev --bind $(RUN_BIND)

# The browser client: web/dist, which `switchboard serve` serves at / (web.static_dir).
WEB_STAMP := web/node_modules/.package-lock.json

web: $(WEB_STAMP)
	@echo "==> building web/"
	cd web && $(NPM) run build

$(WEB_STAMP): web/package-lock.json web/package.json
	cd web && $(NPM) ci --no-audit --no-fund
	@touch $@

build:
	$(CARGO) build -p switchboard-server

build-release:
	$(CARGO) build --release -p switchboard-server

# ---------------------------------------------------------------------------
# Tests. Each part runs even when an earlier one failed; the target fails if any did.

test:
	@status=0; \
	echo "==> cargo test --workspace"; \
	$(CARGO) test --workspace || status=1; \
	$(MAKE) --no-print-directory e2e || status=1; \
	exit $$status

test-rust:
	$(CARGO) test --workspace

e2e: build e2e-deps
	@status=0; \
	$(MAKE) --no-print-directory e2e-js || status=1; \
	$(MAKE) --no-print-directory e2e-py || status=1; \
	$(MAKE) --no-print-directory e2e-web || status=1; \
	exit $$status

e2e-deps: $(JS_STAMP) $(PY_STAMP)

# npm ci writes node_modules/.package-lock.json: reinstall when it is missing or the lock changed.
$(JS_STAMP): $(JS_DIR)/package-lock.json $(JS_DIR)/package.json
	cd $(JS_DIR) && $(NPM) ci --no-audit --no-fund
	@touch $@

$(PY_STAMP): $(PY_DIR)/requirements.txt
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(PY_DIR)/requirements.txt
	@touch $@

e2e-js: $(JS_STAMP)
	@echo "==> e2e (JS, node --test) against $(SWITCHBOARD_BIN)"
	$(NODE) --test --test-reporter=spec $(JS_DIR)/

e2e-py: $(PY_STAMP)
	@echo "==> e2e (Python, pytest) against $(SWITCHBOARD_BIN)"
	$(VENV)/bin/python -m pytest $(PY_DIR)

# Browser tests: needs the debug binary (e2e builds it) and Debian chromium (CHROMIUM_PATH).
e2e-web: web
	@echo "==> e2e (browser, playwright-core + chromium) against $(SWITCHBOARD_BIN)"
	cd web && $(NODE) --test --test-reporter=spec tests/

clean-e2e:
	rm -rf $(JS_DIR)/node_modules $(VENV)

# ---------------------------------------------------------------------------
# Lint

lint: fmt-check clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# ---------------------------------------------------------------------------
# Benchmarks (not part of `make test`): Switchboard side by side with the Node.js
# socket.io baseline (bench/node) and a bare socketioxide server (bench/bare-socketioxide).
# The Node baseline's packages are installed here only.

BENCH_PROFILE ?= quick
BENCH_ARGS ?=
BENCH_NODE_STAMP := bench/node/node_modules/.package-lock.json

bench-deps: $(BENCH_NODE_STAMP)

$(BENCH_NODE_STAMP): bench/node/package-lock.json bench/node/package.json
	cd bench/node && $(NPM) ci --no-audit --no-fund
	@touch $@

bench: bench-deps
	$(CARGO) build --release -p switchboard-server -p bench-bare-socketioxide -p switchboard-loadgen
	./target/release/loadgen suite --profile $(BENCH_PROFILE) $(BENCH_ARGS)
