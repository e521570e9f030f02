"""Fitting cost of `CoordinateSystem.fit`: time and memory for N x 768 float32 teacher features.

The features are synthetic (Gaussian latents through a fixed mixing matrix, like a teacher's correlated features)
and generated batch by batch, so the data itself is never fully in memory: what is measured is the fit's own memory.
Each N runs in a fresh subprocess, so that its peak RSS is its own. Goals: N=200k fits in <= 60 s on 2 CPU cores,
and the peak memory stays flat in N (the statistics are O(D^2)).

Usage: python benchmarks/bench_coordinates.py [--sizes 50000 100000 200000] [--dim 768] [--batch_size 4096]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_batches(num_examples: int, dim: int, batch_size: int, timer: list[float]):
    """(B, dim) float32 batches of correlated features; the time spent generating them is added to ``timer``."""
    rng = np.random.default_rng(0)
    mixing = (rng.standard_normal((dim, dim)) * np.geomspace(1.0, 1e-3, dim)[:, None]).astype(np.float32)
    offset = rng.uniform(-1, 1, dim).astype(np.float32)
    for start in range(0, num_examples, batch_size):
        begin = time.perf_counter()
        latents = rng.standard_normal((min(batch_size, num_examples - start), dim), dtype=np.float32)
        batch = latents @ mixing + offset
        timer[0] += time.perf_counter() - begin
        yield batch


def measure(num_examples: int, dim: int, batch_size: int) -> dict:
    """Fit once on ``num_examples`` streamed rows; runs inside a fresh process."""
    import torch

    from hf_tcs.coordinates import CoordinateSystem

    rss_before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    generation = [0.0]
    tracemalloc.start()
    start = time.perf_counter()
    coordinates = CoordinateSystem.fit(
        synthetic_batches(num_examples, dim, batch_size, generation), num_components=0.99, batch_size=batch_size
    )
    total = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "num_examples": num_examples,
        "feature_dim": dim,
        "batch_size": batch_size,
        "fit_s": round(total - generation[0], 2),
        "data_generation_s": round(generation[0], 2),
        "total_s": round(total, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mib": round(rss_before_mib, 1),
        "peak_traced_mib": round(traced_peak / 2**20, 1),
        "components_for_99pct": coordinates.num_components,
        "torch_threads": torch.get_num_threads(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--batch_size", type=int, default=4096)
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)  # one measurement, in the child process
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure(args.single, args.dim, args.batch_size)))
        return

    rows = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--single", str(size), "--dim", str(args.dim)]
        output = subprocess.run(
            [*command, "--batch_size", str(args.batch_size)], check=True, capture_output=True, text=True
        )
        rows.append(json.loads(output.stdout.strip().splitlines()[-1]))

    print("| N | D | fit (s) | data generation (s) | peak RSS (MiB) | RSS after imports (MiB) | peak traced (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['num_examples']:,} | {r['feature_dim']} | {r['fit_s']} | {r['data_generation_s']} "
            f"| {r['peak_rss_mib']} | {r['rss_after_imports_mib']} | {r['peak_traced_mib']} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    environment = {"numpy": np.__version__, "machine": platform.machine(), "cpus": len(os.sched_getaffinity(0))}
    (RESULTS / "bench_coordinates.json").write_text(
        json.dumps({"environment": environment, "results": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
