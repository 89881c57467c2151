# The two commands: `make demo` (gateway on embedded defaults) and `make test` (the whole suite).
# Both create .venv and install the project into it first; nothing else needs installing by hand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint bench bench-smoke clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned CPU torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/smr demo

serve: $(STAMP)
	$(BIN)/smr serve

# The browser tests drive Debian's chromium (Playwright never downloads one); installed here when missing.
browser:
	@command -v chromium >/dev/null || (apt-get install -y -qq chromium >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) || \
		echo "could not install chromium (apt-get install -y chromium): the browser tests will fail"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check gateway router_core router_lab tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run

bench-smoke: $(STAMP)
	$(BIN)/python bench/run --smoke

clean:
	rm -rf $(VENV) tests/frameworks/.venv
