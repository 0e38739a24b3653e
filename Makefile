# balloonsim: `make run` and `make test` set everything up on a machine with Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench notebooks mutation clean

run: $(VENV)/.installed-run  ## set up (what running needs), then run the quickstart scenario into results/quickstart/
	$(BIN)/balloonsim run scenarios/quickstart.yaml

test: $(VENV)/.installed-test  ## set up (with the test tools and Jupyter), then run the whole test suite
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-run  ## speed figures (not a test); ARGS="--oracle DIR --sweep --fleet 1000 24" for more
	$(BIN)/balloonsim bench $(ARGS)

notebooks: $(VENV)/.installed-notebooks  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

mutation: $(VENV)/.installed-mutation  ## mutation testing (mutmut; slow, not part of test or CI): score per package, survivors in mutants/survivors.txt
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python tools/mutation_report.py --survivors mutants/survivors.txt

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "balloonsim needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# one stamp per set of extras: each is installed when pyproject.toml is newer than its stamp
$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test,notebooks]'
	@touch $@ $(VENV)/.installed-run $(VENV)/.installed-notebooks

$(VENV)/.installed-notebooks: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[notebooks]'
	@touch $@ $(VENV)/.installed-run

$(VENV)/.installed-mutation: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test,mutation]'
	@touch $@ $(VENV)/.installed-run

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis mutants
