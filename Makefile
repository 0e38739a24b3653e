# balloonsim: `make run` and `make test` set everything up on a machine with Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench notebooks clean

run: $(STAMP)  ## set up, then run the quickstart scenario into results/quickstart/
	$(BIN)/balloonsim run scenarios/quickstart.yaml

test: $(STAMP)  ## set up, then run the whole test suite
	$(BIN)/python -m pytest

bench: $(STAMP)  ## speed figures (not a test)
	$(BIN)/balloonsim bench

notebooks: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "balloonsim needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
