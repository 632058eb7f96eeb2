# Two entry points: `make demo` runs the pipeline, `make test` runs the test suite.
# Both set up everything first (venv in .venv, the package, the Kafka jars).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := test,edge

.PHONY: install kafka sysdeps demo test test-quick clean

install: $(VENV)/.installed

# scripts/install.sh: the venv and the package; uv when it can be had (~11 s), else pip (~35 s).
$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV) '$(EXTRAS)' $(PYTHON)
	@touch $@

kafka: install
	$(BIN)/emostream kafka fetch

sysdeps:
	@bash scripts/sysdeps.sh

demo: install kafka
	$(BIN)/emostream demo

# TEST_WORKERS pytest-xdist workers sharing ONE session cluster (3 brokers, started by the first
# worker that needs it, stopped by the controller at the end); most slow tests wait on Kafka
# timeouts, not the CPU. loadgroup keeps the tests that share a module-scoped cluster or lab on
# one worker (tests/conftest.py groups them). TEST_WORKERS=0 runs in one process. Five, on the
# 2-core VM: 244 and 267 s against 278-291 s with four (five runs) and 270 s with six; the CPU is
# ~90 % busy either way, and a fifth worker overlaps more of the tests' waiting.
TEST_WORKERS ?= 5

# compileall: where PYTHONDONTWRITEBYTECODE is set (CI) no process would cache the package's
# bytecode, and the suite starts many Python processes (workers, CLIs, devices).
test: install sysdeps kafka
	@$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# The edit-run loop: no brokers, no fault injection (every test that uses a cluster is marked kafka).
# Two xdist workers: ~43 s on the 2-core VM, against ~72 s in one process.
test-quick: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not kafka and not slow" -n 2

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
