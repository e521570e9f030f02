"""What a model costs at inference: its parameters, and its latency at given batch sizes on this machine.

`demo_banking77.py` prints the student's cost next to its teacher's with these functions, and
`benchmarks/bench_text_teachers.py` records every student's and the teacher's (with `examples/` on `sys.path`).
Latency is the median of repeated forwards after warm-up ones, in inference mode: the median resists the odd slow run
of a busy machine better than the mean, but it is still this machine's number, under its load and its `torch` thread
count.
"""

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class InferenceCost:
    """Parameters and median seconds per forward, by batch size."""

    parameters: int
    latency: dict[int, float]


def count_parameters(model: torch.nn.Module) -> int:
    """Parameters of `model` (shared tensors, e.g. tied embeddings, counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@torch.inference_mode()
def latency_ms(forward: Callable[[], Any], repeats: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median, min and max wall time (ms) of `forward()` over `repeats` timed calls after `warmup` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: time at least one call.")
    for _ in range(warmup):
        forward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        times.append(1000 * (time.perf_counter() - start))
    return {
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3),
        "repeats": repeats,
    }


def median_latency(call: Callable[[], Any], *, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of `call()`, in seconds, over `repeats` timed calls after `warmup` untimed ones."""
    return latency_ms(call, repeats, warmup)["median_ms"] / 1000


def inference_cost(
    model: torch.nn.Module,
    make_inputs: Callable[[int], dict],
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 20,
    warmup: int = 3,
) -> dict[str, Any]:
    """Parameter count and, per batch size, the latency of `model(**make_inputs(batch_size))`, as a JSON-ready dict
    (with the torch thread count and the load average, which shift every figure on a shared machine).

    `make_inputs(n)` returns the model's keyword inputs for `n` examples (prepared once, outside the timing). The
    model is put in eval mode; its training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        latency = {}
        for batch_size in batch_sizes:
            inputs = make_inputs(batch_size)
            latency[str(batch_size)] = latency_ms(lambda inputs=inputs: model(**inputs), repeats, warmup)
    finally:
        model.train(was_training)
    return {
        "parameters": count_parameters(model),
        "latency": latency,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def text_inference_cost(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_sizes: Sequence[int] = (1, 64),
    max_length: int = 64,
    repeats: int = 20,
    warmup: int = 3,
) -> InferenceCost:
    """The cost of `model` on batches of `texts` (the first ones, repeated if there are fewer than a batch),
    tokenized by `tokenizer` (padded to the longest, truncated to `max_length`)."""
    device = next(model.parameters()).device

    def make_inputs(batch_size: int) -> dict:
        batch = [texts[i % len(texts)] for i in range(batch_size)]
        inputs = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {name: tensor.to(device) for name, tensor in inputs.items()}

    cost = inference_cost(model, make_inputs, batch_sizes, repeats, warmup)
    latency = {int(size): timing["median_ms"] / 1000 for size, timing in cost["latency"].items()}
    return InferenceCost(cost["parameters"], latency)


def cost_table(costs: dict[str, InferenceCost], *, reference: str) -> list[str]:
    """Markdown rows: parameters and latency of each model, then each model's ratio to `reference` (e.g. the
    teacher)."""
    batch_sizes = list(costs[reference].latency)
    lines = [
        "| model | parameters | " + " | ".join(f"latency, batch {b}" for b in batch_sizes) + " |",
        "|---|---|" + "---|" * len(batch_sizes),
    ]
    for name, cost in costs.items():
        latencies = " | ".join(f"{cost.latency[b] * 1000:.1f} ms" for b in batch_sizes)
        lines.append(f"| {name} | {cost.parameters / 1e6:.1f} M | {latencies} |")
    base = costs[reference]
    for name, cost in costs.items():
        if name != reference:
            ratios = " | ".join(f"{cost.latency[b] / base.latency[b]:.2f} x" for b in batch_sizes)
            lines.append(f"| {name} / {reference} | {cost.parameters / base.parameters:.2f} x | {ratios} |")
    return lines
