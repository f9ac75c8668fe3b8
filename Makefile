# tfprune: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3
export KERAS_BACKEND ?= tensorflow

.PHONY: demo browser test test-jax test-fast lint bench bench-compare bench-criteria bench-sensitivity bench-allocation bench-structure bench-zoo bench-mobilenetv3 bench-export bench-recipes bench-latency-budget bench-cifar-latency clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev,plots,jax,hub]"
	touch $(STAMP)

# DEMO_DIR keeps every file of the run (default: a new temporary folder).
DEMO_DIR ?=
demo: $(STAMP)
	$(PY) examples/demo.py $(if $(DEMO_DIR),--out_dir=$(DEMO_DIR))

# The report's browser test renders with headless Chromium. As root on Debian/Ubuntu it is
# installed when missing (best effort: without it that test skips and the build goes on).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { test "$$(id -u)" = 0 && command -v apt-get >/dev/null 2>&1 && \
	    echo "installing chromium for the report's browser test (apt-get)" && \
	    { timeout 600 apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { timeout 300 apt-get update -q >/dev/null 2>&1 && \
	        timeout 600 apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium not installed; tests/test_report_cli.py's browser test will skip"

# Test files also run under KERAS_BACKEND=jax (CPU) by `make test` (README "Backends").
JAX_TESTS ?= tests/test_schedules.py tests/test_granularity.py tests/test_criteria.py \
	tests/test_api.py tests/test_callbacks.py tests/test_regularizers.py \
	tests/test_jax_training.py tests/test_backends.py tests/test_accumulate.py \
	tests/test_sensitivity_sweeping.py tests/test_sensitivity_estimation.py \
	tests/test_sensitivity_recovery.py tests/test_structure_scores.py \
	tests/test_structure_shrink.py tests/test_finetune.py tests/test_regularizers_svd.py \
	tests/test_jaxbuffers.py
# Also pass under JAX; left out of `make test` for time (`make test-jax` runs them).
JAX_TESTS_MORE ?= tests/test_structure_surgery.py tests/test_determinism.py \
	tests/test_recipes.py tests/test_lottery.py

test: $(STAMP) browser
	$(PY) -m pytest -q -n 2 --durations=15
	KERAS_BACKEND=jax $(PY) -m pytest -q -n 2 --durations=10 $(JAX_TESTS)

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -q -n 2 $(JAX_TESTS) $(JAX_TESTS_MORE)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check --select F tfprune tfprune_cli tests tools examples

bench: $(STAMP)
	$(PY) tools/bench_train_step.py

# The benchmarks behind docs/BENCHMARKS.md (CIFAR-10 ones need ../shared/data).
bench-criteria: $(STAMP)
	$(PY) tools/bench_criteria.py --dataset mnist
	$(PY) tools/bench_criteria.py --dataset cifar10_small

bench-sensitivity: $(STAMP)
	$(PY) tools/bench_sensitivity.py

bench-allocation: $(STAMP)
	$(PY) tools/bench_allocation.py

bench-structure: $(STAMP)
	$(PY) tools/bench_structure.py

bench-zoo: $(STAMP)
	$(PY) tools/bench_zoo.py

bench-mobilenetv3: $(STAMP)
	$(PY) tools/bench_mobilenetv3.py --table

bench-export: $(STAMP)
	$(PY) tools/bench_export.py

bench-recipes: $(STAMP)
	$(PY) tools/bench_recipes.py

bench-latency-budget: $(STAMP)
	$(PY) tools/bench_latency_budget.py

bench-cifar-latency: $(STAMP)
	$(PY) tools/bench_cifar_latency.py --json=out/bench_cifar_latency.json

# Real TFMOT (on tf_keras) lives in a venv of its own, so .venv stays without it.
COMPARE_VENV  ?= .venv-compare
COMPARE_STAMP := $(COMPARE_VENV)/.installed

$(COMPARE_STAMP): setup.py
	$(PYTHON) -m venv $(COMPARE_VENV)
	$(COMPARE_VENV)/bin/pip install -q --upgrade pip
	$(COMPARE_VENV)/bin/pip install -q -e ".[compare]"
	touch $(COMPARE_STAMP)

bench-compare: $(COMPARE_STAMP)
	$(COMPARE_VENV)/bin/python tools/bench_vs_tfmot.py --repeats 2
	$(COMPARE_VENV)/bin/python tools/compare_tfmot_tutorial.py --seeds 0,1,2,3

clean:
	rm -rf $(VENV) $(COMPARE_VENV) build dist *.egg-info
