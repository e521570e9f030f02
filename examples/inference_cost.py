"""What a model costs at inference: its parameters, and its latency at given batch sizes on this machine.

`demo_banking77.py` prints the student's cost next to its teacher's with these functions, and a benchmark comparing
text models can import them the same way (with `examples/` on `sys.path`). Latency is the median of repeated
forwards after warm-up ones, in inference mode: the median resists the odd slow run of a busy machine better than the
mean, but it is still this machine's number, under its load and its `torch` thread count.
"""

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch


@dataclass
class InferenceCost:
    """Parameters and median seconds per forward, by batch size."""

    parameters: int
    latency: dict[int, float]


def median_latency(call: Callable[[], Any], *, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of `call()`, in seconds, over `repeats` timed calls after `warmup` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: time at least one call.")
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    model.eval()
    device = next(model.parameters()).device
    latency = {}
    for batch_size in batch_sizes:
        batch = [texts[i % len(texts)] for i in range(batch_size)]
        inputs = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
        with torch.inference_mode():
            latency[batch_size] = median_latency(partial(model, **inputs), repeats=repeats, warmup=warmup)
    return InferenceCost(sum(p.numel() for p in model.parameters()), latency)


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
