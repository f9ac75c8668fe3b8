# tfprune: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3
export KERAS_BACKEND ?= tensorflow

.PHONY: demo test test-fast lint bench bench-compare bench-criteria bench-sensitivity bench-structure bench-zoo bench-export bench-recipes clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev,plots]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check --select F tfprune tests tools examples

bench: $(STAMP)
	$(PY) tools/bench_train_step.py

# The benchmarks behind docs/BENCHMARKS.md (CIFAR-10 ones need ../shared/data).
bench-criteria: $(STAMP)
	$(PY) tools/bench_criteria.py --dataset mnist
	$(PY) tools/bench_criteria.py --dataset cifar10_small

bench-sensitivity: $(STAMP)
	$(PY) tools/bench_sensitivity.py

bench-structure: $(STAMP)
	$(PY) tools/bench_structure.py

bench-zoo: $(STAMP)
	$(PY) tools/bench_zoo.py

bench-export: $(STAMP)
	$(PY) tools/bench_export.py

bench-recipes: $(STAMP)
	$(PY) tools/bench_recipes.py

bench-compare: $(STAMP)
	$(PIP) install -q -e ".[compare]"
	$(PY) tools/bench_vs_tfmot.py --repeats 2

clean:
	rm -rf $(VENV) build dist *.egg-info
