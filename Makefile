# The README's two commands are `make demo` and `make test`; everything else here serves them.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench image clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## Create the virtual environment with the pinned dependencies.
setup: $(STAMP)

## Set up, pull the embedded S&P 500 / NASDAQ data, train and promote the six models, build the Bento,
## serve it on port $(PORT) and print a request that works (Ctrl-C stops it).
PORT ?= 3000
DEMO_FLAGS ?=
demo: setup
	$(BIN)/mlops demo --port $(PORT) $(DEMO_FLAGS)

## Set up and run the whole suite: lint, format check, type check, tests.
test: setup lint typecheck unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest

## Rerun the benchmarks, rewrite their recorded figures under benchmarks/results/ and the README's figures from them.
bench: setup
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/readme_figures.py

## Build the OCI image of the production models' Bento and smoke-test it, with Docker if an engine answers, else
## podman or buildah (installed with apt-get when missing, as root). With no model in production yet (a fresh
## machine), first trains the quick models on the embedded data. The CA bundle your environment already names
## (SSL_CERT_FILE or PIP_CERT) is mounted into build steps for TLS-intercepting proxies: IMAGE_CA_BUNDLE= turns it off.
IMAGE_CA_BUNDLE ?= $(or $(MLOPS_IMAGE_CA_BUNDLE),$(SSL_CERT_FILE),$(PIP_CERT))
IMAGE_FLAGS ?=
image: setup
	@$(BIN)/python -c "from training.registry.promotion import Registry; raise SystemExit(not Registry().production())" \
		|| { $(BIN)/mlops data pull --source embedded && $(BIN)/mlops train --quick --promote; }
	$(BIN)/mlops image --install-tools $(if $(IMAGE_CA_BUNDLE),--ca-bundle $(IMAGE_CA_BUNDLE)) $(IMAGE_FLAGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
