# The README's commands. Everything installs into .venv; `make install` is idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install docker-compose demo test test-e2e lint benchmarks clean

install: $(STAMP) docker-compose

# torch first: pinned, so no later requirement can pull a different multi-GB build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

# Debian's docker-compose validates infra/compose in `make test` (no Docker engine needed). Installed
# only when missing and possible (root with apt-get); otherwise a note, and tests/infra/test_compose.py
# fails saying how to install it.
docker-compose:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q docker-compose >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q docker-compose >/dev/null; } || \
	      echo "note: apt-get could not install docker-compose; the compose tests fail until it is installed"; \
	  else \
	    echo "note: docker-compose is missing; install it (apt-get install docker-compose) for the compose tests"; \
	  fi; }

demo: install
	$(VENV)/bin/reskd demo

test: install
	$(PY) -m pytest -m "not e2e" -q

test-e2e: install
	$(PY) -m pytest -m e2e -q

lint: install
	$(VENV)/bin/ruff check reskd_core reskd_stack flows tests benchmarks

benchmarks: install
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/loader.py
	$(PY) benchmarks/distill_step.py
	$(PY) benchmarks/ray_scaling.py
	$(PY) benchmarks/end_to_end.py

clean:
	rm -rf demo runs mlruns mlflow.db .pytest_cache
