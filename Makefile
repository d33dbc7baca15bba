# hoard: two commands on a fresh machine — `make run` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
EXTRAS  ?= onnx,torch,test
MOUNT   ?= ./models
PYTEST_ARGS ?=

.PHONY: install test run serve bench clean lint

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

run: install
	@mkdir -p $(MOUNT)
	$(VENV)/bin/hoard mount $(MOUNT)

serve: install
	$(VENV)/bin/hoard serve

bench: install
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
