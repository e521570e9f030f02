"""What a model costs at inference: parameter count and CPU latency (median of repeated forwards) per batch size.

Used by bench_text_teachers.py for every student and the teacher, so that a result can say "the student keeps X % of
the teacher's accuracy at 1/Y of its latency". The latency is the wall time of one forward pass under
`torch.inference_mode()` on inputs prepared beforehand (tokenisation left out: the same for student and teacher), the
median over ``repeats`` timed runs after ``warmup`` untimed ones, with the threads torch uses in this process
(recorded); on a shared machine the load average is recorded too, since it shifts every figure.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Parameters of ``model`` (shared tensors, e.g. tied embeddings, counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@torch.inference_mode()
def latency_ms(forward: Callable[[], object], repeats: int = 20, warmup: int = 3) -> dict:
    """Median, min and max wall time (ms) of ``forward()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: time at least one run.")
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


def inference_cost(
    model: nn.Module,
    make_inputs: Callable[[int], dict],
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 20,
    warmup: int = 3,
) -> dict:
    """Parameter count and, per batch size, the latency of ``model(**make_inputs(batch_size))`` on the CPU.

    ``make_inputs(n)`` returns the model's keyword inputs for ``n`` real examples (prepared once, outside the timing).
    The model is put in eval mode; its training mode is restored afterwards.
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
