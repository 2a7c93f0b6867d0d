# Lotse — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

APP_PORT ?= 8000
ENGINE_PORT ?= 5005
export APP_PORT ENGINE_PORT
export LOTSE_ENGINE_URL ?= http://localhost:$(ENGINE_PORT)
export LOTSE_ACTION_ENDPOINT ?= http://localhost:$(APP_PORT)/webhook

APP_VENV := .venv
ENGINE_VENV := .venv-engine
APP_PY := $(APP_VENV)/bin/python
ENGINE_PY := $(ENGINE_VENV)/bin/python
APP_PYTHON ?= python3

# A Python 3.10 interpreter for the engine: PATH first, then pyenv. Each candidate must really be 3.10.
define find_python310
for c in "$$PYTHON310" python3.10 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python 2>/dev/null | sort -V | tail -n 1); do \
  [ -n "$$c" ] || continue; \
  if PYENV_VERSION=$$(ls $$(pyenv root 2>/dev/null)/versions 2>/dev/null | grep '^3\.10\.' | sort -V | tail -n 1) \
     "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then echo "$$c"; exit 0; fi; \
done; exit 1
endef

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: install
install: $(ENGINE_VENV)/.installed $(APP_VENV)/.installed ## create both environments (engine: Rasa on 3.10; app: 3.11+)

$(ENGINE_VENV)/.installed: config/engine/requirements.txt config/engine/constraints.txt
	@py=$$($(find_python310)) || { echo "No Python 3.10 found: install Python 3.10 (e.g. 'pyenv install 3.10') or set PYTHON310=/path/to/python3.10." >&2; exit 1; }; \
	echo "engine: creating $(ENGINE_VENV) with $$py"; \
	rm -rf $(ENGINE_VENV); \
	PYENV_VERSION=$$(ls $$(pyenv root 2>/dev/null)/versions 2>/dev/null | grep '^3\.10\.' | sort -V | tail -n 1) "$$py" -m venv $(ENGINE_VENV)
	$(ENGINE_PY) -m pip install -q --upgrade "pip<25"
	$(ENGINE_PY) -m pip install -q -r config/engine/requirements.txt -c config/engine/constraints.txt
	$(ENGINE_PY) -c "import rasa, packaging, pydantic; print('engine: rasa', rasa.__version__)"
	@touch $@

$(APP_VENV)/.installed: pyproject.toml
	@$(APP_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "The app needs Python 3.11 or newer as '$(APP_PYTHON)': install it or set APP_PYTHON." >&2; exit 1; }
	rm -rf $(APP_VENV)
	$(APP_PYTHON) -m venv $(APP_VENV)
	$(APP_PY) -m pip install -q --upgrade pip
	$(APP_PY) -m pip install -q -e '.[dev]'
	@touch $@

.PHONY: train
train: install ## train the engine's model into models/ (only when data or config changed)
	$(APP_PY) -m bot.training train

.PHONY: migrate
migrate: $(APP_VENV)/.installed ## create or upgrade the app's database
	$(APP_PY) -m bot db-upgrade

.PHONY: engine
engine: install ## start the engine alone on ENGINE_PORT with the newest model
	$(APP_PY) -m bot.training serve-engine

.PHONY: app
app: $(APP_VENV)/.installed migrate ## start the app alone on APP_PORT
	$(APP_PY) -m bot serve

.PHONY: run
run: train migrate ## start engine and app (widget demo at http://localhost:APP_PORT/)
	@$(APP_PY) -m bot.training serve-engine & engine_pid=$$!; \
	trap 'kill $$engine_pid 2>/dev/null; wait $$engine_pid 2>/dev/null' EXIT INT TERM; \
	$(APP_PY) -m bot serve

.PHONY: check-content
check-content: $(APP_VENV)/.installed ## validate content/ and report texts missing in a language
	$(APP_PY) -m bot check-content

.PHONY: lint
lint: $(APP_VENV)/.installed ## ruff and mypy (strict) on bot/ and actions/
	$(APP_VENV)/bin/ruff check bot actions tests
	$(APP_VENV)/bin/mypy

.PHONY: test
test: train ## set up what is needed, then run the whole test suite
	$(MAKE) lint
	$(APP_VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: eval
eval: train ## NLU and language-detection evaluation on the held-out sets (report in docs/eval/)
	$(APP_PY) -m bot.evaluation

.PHONY: bench
bench: train ## the benchmarks; prints their figures
	$(APP_PY) -m bot.benchmark

.PHONY: clean
clean: ## remove environments, models and local data
	rm -rf $(APP_VENV) $(ENGINE_VENV) models var
