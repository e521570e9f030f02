"""Offline-safe `evaluate` metrics: the Hub's metric module when it can be reached, hf_tcs's own copy otherwise."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import evaluate
from huggingface_hub import constants as hub_constants

from .columns import IGNORE_INDEX

__all__ = ["accuracy", "load_metric"]

_SHIPPED = Path(__file__).parent / "metrics"


def load_metric(name: str = "accuracy") -> evaluate.EvaluationModule:
    """`evaluate.load(name)`, falling back to the module that ships with hf_tcs when the Hub is out of reach.

    `evaluate` keeps its metric scripts on the Hub, so `evaluate.load("accuracy")` fails on an offline machine;
    hf_tcs ships the metrics it reports so that `make demo` and offline training runs still use `evaluate`.
    """
    shipped = _SHIPPED / name
    if not hub_constants.HF_HUB_OFFLINE:
        try:
            return evaluate.load(name)
        except Exception:  # no network, Hub down: use the shipped copy below when there is one
            if not shipped.is_dir():
                raise
    if not shipped.is_dir():
        available = sorted(path.name for path in _SHIPPED.iterdir() if path.is_dir())
        raise ValueError(
            f"The metric {name!r} needs the Hugging Face Hub, which is offline (HF_HUB_OFFLINE=1); hf_tcs ships "
            f"{available} for offline use: use one of them, or pass a local metric script path to evaluate.load."
        )
    return evaluate.load(str(shipped / f"{name}.py"))


@lru_cache(maxsize=1)
def _accuracy_metric():
    return load_metric("accuracy")


def accuracy(eval_prediction) -> dict[str, float]:
    """Accuracy over the labelled examples, with `evaluate` (the Hub's module, or the one shipped with hf_tcs)."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    labels = eval_prediction.label_ids
    labelled = labels != IGNORE_INDEX
    return _accuracy_metric().compute(predictions=logits.argmax(-1)[labelled], references=labels[labelled])
