# The two commands that work on a fresh clone: `make plan` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: plan plan-all test lint bench doctor clean docs mutants

$(VENV)/.installed-runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## plan: create .venv, install, render the dev stack offline into build/plan/dev (STACK=prod for prod)
plan: $(VENV)/.installed-runtime
	$(PY) -m scripts.plan --stack $(STACK)

plan-all: $(VENV)/.installed-runtime
	for s in $$(ls stacks | sed -n 's/^Pulumi\.\(.*\)\.yaml$$/\1/p'); do $(PY) -m scripts.plan --stack $$s || exit $$?; done

## test: every test (unit, mocks, plan determinism, TLS on loopback); worksteal keeps the long type check from ending up last on one worker
test: $(VENV)/.installed-dev
	./.ci/install-debian-packages
	@# Byte-compiled once here (as pip does for installed packages), not again in each of the
	@# suite's ~150 `python -m scripts...` runs when PYTHONDONTWRITEBYTECODE is set; a file that
	@# does not compile is pytest's to report, with its test.
	@$(PY) -m compileall -q -j 0 __main__.py components scripts policy bench tests >/dev/null 2>&1 || true
	$(PY) -m pytest -q -n auto --dist worksteal

## lint: static type gate (basedpyright over the program, components, scripts, policy)
lint: $(VENV)/.installed-dev
	$(VENV)/bin/basedpyright

## docs: regenerate the config block of Pulumi.yaml and the README table from components/config.py
docs: $(VENV)/.installed-runtime
	$(PY) -m scripts.configdoc --write

## doctor: what a real deployment needs (Pulumi CLI, AWS credentials, region, backend) and what is missing; never fails
doctor: $(VENV)/.installed-runtime
	-$(PY) -m scripts.doctor $(DOCTOR_ARGS)

## mutants: mutation testing (mutmut) of the modules that decide who gets in, each against its own tests, one
## module at a time with one worker (MUTANTS="dns_rules egress" for some); not part of make test; docs/testing.md
mutants: $(VENV)/.installed-dev
	$(PY) -m scripts.mutants $(MUTANTS)

bench: $(VENV)/.installed-dev
	$(PY) -m bench.plan --write BENCHMARKS.md

clean:
	rm -rf build .pytest_cache
