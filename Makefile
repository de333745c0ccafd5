# compressbench: `make study` runs the default study, `make test` runs the tests; both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUDY ?= studies/default.yaml
OUT ?= runs/default

.PHONY: setup study test test-all bench lint data fashion-mnist fortunes browser clean

setup: $(STAMP)

# torch first, pinned: the CPU wheel on this machine's disk. A loose `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,openvino,ray,text]'
	@$(MAKE) --no-print-directory data
	@$(MAKE) --no-print-directory browser
	touch $(STAMP)

# Fashion-MNIST and the fortunes quotes (the text data) come from Debian's packages when we may install them;
# otherwise say exactly how to get them.
data: fashion-mnist fortunes

fortunes:
	@if [ -f /usr/share/games/fortunes/computers ]; then \
		echo "fortunes: found in /usr/share/games/fortunes"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q fortunes >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fortunes >/dev/null)) && \
		echo "fortunes: installed Debian's fortunes"; \
	else \
		echo "fortunes: not installed. Run 'sudo apt-get install fortunes', or set COMPRESSBENCH_FORTUNES to a folder with its topic files."; \
	fi

fashion-mnist:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		echo "fashion-mnist: found in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null)) && \
		echo "fashion-mnist: installed Debian's dataset-fashion-mnist"; \
	else \
		echo "fashion-mnist: not installed. Run 'sudo apt-get install dataset-fashion-mnist'," \
		     "or '$(BIN)/compressbench data download fashion-mnist', or set COMPRESSBENCH_DATA to a folder with the IDX files."; \
	fi

# Chromium renders the HTML report in a test; where it cannot be installed, that test is skipped with the reason.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		((apt-get install -y -q chromium >/dev/null 2>&1 || \
		  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) && \
		 echo "chromium: installed Debian's chromium") || echo "chromium: could not be installed; the browser test is skipped"; \
	else \
		echo "chromium: not installed (needs root and apt); the browser test of the report is skipped"; \
	fi

study: $(STAMP)
	@# A failed job is stored and reported; the report is written whatever the study's exit status.
	$(BIN)/compressbench study $(STUDY) --out $(OUT); status=$$?; $(BIN)/compressbench report $(OUT) && exit $$status

# The fast tier: every package, without the tests marked slow (a Ray cluster, a wheel build, kill and resume, real
# training of more than a few seconds). test-all is everything: what CI runs. Both list their 15 slowest tests.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
