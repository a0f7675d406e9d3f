PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml hatch_build.py src/codeblue/signals/_kernels.c | sha1sum | cut -c1-12)

.PHONY: run test lint typecheck pytest demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/codeblue serve --host 127.0.0.1 --port 8600

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src/
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/

demo: $(STAMP)
	$(BIN)/codeblue demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
