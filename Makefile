# Two commands need nothing but Python on the machine:
#   make test   builds its own tool virtualenv and runs the whole tox matrix,
#               lint, packaging and the integration suite
#   make demo   builds .venv with the package and the example project, then starts
#               web, worker and beat together
#   make bench  prints the benchmarks under bench/ (not part of make test)
PYTHON ?= python3
TOOLS := .tools
VENV := .venv
# pyenv keeps 3.11-3.13 side by side; expose them all to tox (harmless without pyenv).
export PYENV_VERSION ?= $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.1[123]\.[0-9]+$$' | paste -sd: -)
# uv must never download an interpreter: a missing one is a failure under CI.
export UV_PYTHON_DOWNLOADS := never
SKIP_MISSING := $(if $(filter true TRUE True 1,$(CI)),false,true)
TOX_PARALLEL ?= 2

.PHONY: test demo bench lint clean

$(TOOLS)/bin/tox:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade pip
	$(TOOLS)/bin/python -m pip install -q "tox>=4.20" "tox-uv>=1.11"

test: $(TOOLS)/bin/tox
	$(TOOLS)/bin/tox run-parallel --parallel $(TOX_PARALLEL) --parallel-no-spinner \
		--skip-missing-interpreters $(SKIP_MISSING)

lint: $(TOOLS)/bin/tox
	$(TOOLS)/bin/tox run -e lint

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

# `make demo PORT=8001` serves the demo on another port.
PORT ?= 8000
demo: $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -e . -r example_project/requirements.txt
	cd example_project && PORT='$(PORT)' ../$(VENV)/bin/python run_demo.py

# PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379, dbs 8-9)
# must run; BENCH_SCALE=0.01 makes the million-row seed a quick one.
bench: $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -e . "psycopg[binary]" \
		-r example_project/requirements.txt gunicorn aiosmtpd redis
	$(VENV)/bin/python bench/enumeration.py
	BENCH_HASHER=default BENCH_ROUNDS=60 $(VENV)/bin/python bench/enumeration.py
	$(VENV)/bin/python bench/request_cpu.py
	$(VENV)/bin/python bench/http_load.py
	$(VENV)/bin/python bench/celery_throughput.py
	$(VENV)/bin/python bench/redrive.py
	$(VENV)/bin/python bench/scale.py

clean:
	rm -rf $(TOOLS) $(VENV) .tox build dist *.egg-info
