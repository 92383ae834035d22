# The README's two commands: `make demo` (set up, run the quickstart) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench install clean

# TypeScript changes of the sidebar trigger a reinstall (which rebuilds it).
LABEXT_SOURCES := labextension/package.json labextension/yarn.lock \
	$(shell find labextension/src labextension/style -type f 2>/dev/null)

$(STAMP): pyproject.toml $(LABEXT_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	DVC_NO_ANALYTICS=1 $(BIN)/jupyter-mlops demo --dir build/demo

lint: $(STAMP)
	$(BIN)/ruff check jupyter_mlops tests benchmarks
	$(BIN)/ruff format --check jupyter_mlops tests benchmarks
	$(BIN)/mypy

test: $(STAMP)
	$(MAKE) lint
	# Two workers, each test file kept whole on one of them (module fixtures start once).
	DVC_NO_ANALYTICS=1 $(BIN)/python -m pytest -m "not browser" -n 2 --dist loadfile
	# The browser suite (one JupyterLab + Chromium) runs in a process of its own: a fresh
	# environment and event loop after hundreds of tests that start servers and kernels.
	DVC_NO_ANALYTICS=1 $(BIN)/python -m pytest -m browser tests/browser

bench: $(STAMP)
	DVC_NO_ANALYTICS=1 $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf build .pytest_cache .ruff_cache labextension/lib labextension/tsconfig.tsbuildinfo \
		jupyter_mlops/labextension
