# The two commands of the README: `make test` and `make demo`. Each creates the virtualenv in .venv (or reuses
# it while constraints.txt and setup.py are unchanged) and installs hf_tcs into it.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.hf_tcs-installed
# Offline by default: the demo and the tests never need the Hub.
RUN := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/python

.PHONY: install test demo lint bench clean

$(STAMP): constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,demo]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(RUN) -m pytest tests

demo: $(STAMP)
	$(RUN) examples/demo_banking77.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(RUN) benchmarks/bench_teacher_pass.py
	$(RUN) benchmarks/bench_coordinates.py
	$(RUN) benchmarks/bench_train_step.py
	$(RUN) benchmarks/bench_banking77.py

clean:
	rm -rf $(VENV) outputs
