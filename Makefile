# Two entry points (see README): `make demo` runs `xrl report` on bundled defaults, `make test` runs the tests.
# Both create .venv on first use; torch is pinned here (a local CPU wheel) because an unpinned torch pulls CUDA.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs/report
TORCH_PIN := torch==2.13.0

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/xrl report --out $(OUT)
	@echo "open $(OUT)/index.html"

test: venv
	$(BIN)/python -m pytest -q -n 2 tests

bench: venv
	for f in bench/*.py; do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) outputs .pytest_cache

.PHONY: venv demo test bench clean
