"""Class names for students: one place that turns a task's label names into a config's `id2label` / `label2id`.

The `hf-tcs` jobs build the student with the task's names (`load_student`), and `TCSDistillationTrainer` names a
student whose config has only transformers' placeholders (`LABEL_0`, `LABEL_1`, ...) from the training set's
`ClassLabel`, so that a saved student predicts `card_arrival`, not `LABEL_11`, whichever route trained it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import datasets

__all__ = ["class_label_names", "label_config", "name_labels"]

logger = logging.getLogger(__name__)

_LABEL_COLUMNS = ("label", "labels")


def label_config(label_names: Sequence[str]) -> dict[str, Any]:
    """The config values naming the classes: `num_labels`, `id2label` and `label2id`."""
    names = [str(name) for name in label_names]
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def class_label_names(dataset: datasets.Dataset | None) -> list[str] | None:
    """The names of a dataset's `ClassLabel` label column (`label` or `labels`); None when it has none."""
    features = getattr(dataset, "features", None) or {}
    feature = next((features[name] for name in _LABEL_COLUMNS if name in features), None)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def name_labels(model: Any, dataset: datasets.Dataset | None) -> None:
    """Give `model.config` the class names of `dataset`'s `ClassLabel` when it has only placeholder names.

    A config that already names its classes keeps its names; when they differ from the dataset's, a warning says so
    (the student would predict names that do not match the data it was trained on).
    """
    names = class_label_names(dataset)
    config = getattr(model, "config", None)
    if names is None or config is None:
        return
    num_labels = config.num_labels
    if len(names) != num_labels:
        logger.warning(
            "The training set's label column names %d classes but the student has num_labels=%d: its id2label is "
            "left as it is. Load the student with num_labels=%d to predict the dataset's class names.",
            len(names),
            num_labels,
            len(names),
        )
        return
    current = [str(config.id2label.get(i, "")) for i in range(num_labels)]
    if current == [f"LABEL_{i}" for i in range(num_labels)]:
        for key, value in label_config(names).items():
            setattr(config, key, value)
        logger.info(
            "Named the student's %d classes from the training set's ClassLabel (%s, ...).", num_labels, names[0]
        )
    elif current != names:
        differ = next(i for i in range(num_labels) if current[i] != names[i])
        logger.warning(
            "The student's id2label differs from the training set's ClassLabel names (class %d: %r in the config, %r "
            "in the dataset); the student keeps its own names. Set `model.config.id2label` / `label2id` to the "
            "dataset's names (`hf_tcs.labels.label_config(names)`) if they are the right ones.",
            differ,
            current[differ],
            names[differ],
        )
