#!/usr/bin/env bash
# benchmarks/bench_gpu.py on this workplace's device machine (one H200; its Python has torch, transformers 5.17,
# accelerate, timm, pyarrow, pandas, xxhash, but not datasets, evaluate, dill or multiprocess, and no package
# registry), in one call.
#
# 1. Here, once: `make gpu-wheels` downloads those four pure-Python wheels (datasets and evaluate at the versions of
#    constraints.txt, dill and multiprocess at the versions datasets pins) into .gpu_wheels/, which git ignores:
#    about 1 MB, so the working tree that travels stays far under its 64 MiB limit. (If the check below says the
#    device's pyarrow is older than datasets needs: `make gpu-wheels EXTRA=pyarrow==26.0.1`, 53 MiB more: still
#    under the limit.)
# 2. One call of the device tool's `run`, with the wheels carried:
#        command:   bash benchmarks/gpu_device_run.sh
#        carry:     [".gpu_wheels"]
#        timeout_s: 360
#    The benchmark should take about 4 minutes there (an estimate: it has not run on a GPU yet; its goal is under 6);
#    360 s plus a machine start of 1-2 minutes leaves enough of the 15 minutes of device time for a second run at the
#    same limit. Rerun at once if needed (the machine is still warm), else call `give_back`.
#    Its arguments go to bench_gpu.py: `OUT=/tmp/x bash benchmarks/gpu_device_run.sh --smoke` tries it on any machine
#    whose python3 is a Python 3.12 with torch and transformers.
# 3. What comes back under files_at: bench_gpu.json, bench_gpu.md (also written after each section, so a run cut short
#    keeps what it measured) and bench_gpu.log. Copy the first two into benchmarks/results/ and commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
site=/tmp/hf_tcs_site

shopt -s nullglob
wheels=(.gpu_wheels/*.whl)
if ((${#wheels[@]} == 0)); then
    echo "No wheels in .gpu_wheels/: run 'make gpu-wheels' where pip reaches the registry, and carry .gpu_wheels." >&2
    exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
export PYTHONPATH="$site:$PWD/src" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1

# What the carried wheels need from the device's own packages (installed without their dependencies): say what is
# missing or of another version before the benchmark fails on it.
python3 - <<'EOF'
import importlib.metadata as metadata

from packaging.requirements import Requirement

for name in ("datasets", "evaluate"):
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            print(f"{name} needs {requirement}: not installed here (add its wheel to .gpu_wheels)")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            print(f"{name} needs {requirement}, this machine has {version}")
print("Checked the requirements of the carried datasets and evaluate against this machine's packages.")
EOF
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python3 benchmarks/bench_gpu.py --output "$out/bench_gpu.json" "$@" 2>&1 | tee "$out/bench_gpu.log"
