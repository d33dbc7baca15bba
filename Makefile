# hoard: two commands on a fresh machine — `make run` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
EXTRAS  ?= onnx,torch,test
MOUNT   ?= ./models
PYTEST_ARGS ?=

.PHONY: install system-deps test run serve bench docs clean

install: $(STAMP)

# libfuse3 (fusermount3) for the mount: installed with apt when missing and we are root
system-deps:
	@command -v fusermount3 >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing fuse3"; DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null; \
	  else echo "fusermount3 is missing: install fuse3 (e.g. sudo apt-get install fuse3)" >&2; exit 1; fi; }

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $(STAMP)

test: install system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

run: install system-deps
	@mkdir -p $(MOUNT)
	$(VENV)/bin/hoard mount $(MOUNT)

serve: install
	$(VENV)/bin/hoard serve

bench: install system-deps
	$(PY) -m bench.run

# the README's configuration table, from the settings and the source registry
docs: install
	$(PY) -c "import re, pathlib; from hoard.cli.config import config_table; p = pathlib.Path('README.md'); \
	t = p.read_text(); p.write_text(re.sub(r'(<!-- config-table:[^>]*-->\n).*?(\n<!-- /config-table -->)', \
	lambda m: m.group(1) + config_table() + m.group(2), t, flags=re.S))"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
