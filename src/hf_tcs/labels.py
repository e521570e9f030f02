"""The labels a student trains on: their class names, and the checks that labelled data and the unlabelled pool pass.

One place turns a task's label names into a config's `id2label` / `label2id`. The `hf-tcs` jobs build the student
with the task's names (`load_student`), and `TCSDistillationTrainer` names a student whose config has only
transformers' placeholders (`LABEL_0`, `LABEL_1`, ...) from the training set's `ClassLabel`, so that a saved student
predicts `card_arrival`, not `LABEL_11`, whichever route trained it. The checks (`check_labels`,
`check_training_labels`, `check_unlabeled_pool`) run when the trainer is built, so that a label the student cannot
learn from is an error that names the fix, not a silent training on the wrong targets.
"""

from __future__ import annotations

import inspect
import logging
import numbers
from collections.abc import Sequence
from typing import Any

import datasets
import torch

from .columns import IGNORE_INDEX, LABEL_COLUMNS, label_column
from .config import TCSConfig

__all__ = [
    "check_labels",
    "check_training_labels",
    "check_unlabeled_pool",
    "class_label_names",
    "label_config",
    "name_labels",
]

logger = logging.getLogger(__name__)


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
    feature = next((features[name] for name in LABEL_COLUMNS if name in features), None)
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


def check_labels(dataset: datasets.Dataset, num_labels: int, name: str) -> list[int] | None:
    """Labels must be whole numbers in the student's label set; -100 and None mark unlabelled examples.

    Returns the distinct labels of the labelled examples, or None when the dataset has no label column.
    """
    column = label_column(dataset)
    if column is None:
        return None
    values = [value for value in dataset.unique(column) if value is not None and value != IGNORE_INDEX]
    not_numbers = [value for value in values if isinstance(value, bool) or not isinstance(value, numbers.Real)]
    if not_numbers:
        raise ValueError(
            f"{name} has labels {not_numbers[:10]} in column {column!r} that are not class indices: encode them as "
            f"0..N-1 first, e.g. with `dataset.class_encode_column({column!r})`."
        )
    fractional = sorted(value for value in values if not float(value).is_integer())
    if fractional:
        raise ValueError(
            f"{name} has fractional labels {fractional[:10]} in column {column!r}: class labels are whole numbers "
            "0..N-1 (a float label would be cut to an int). Map them to class indices, or mark unlabelled examples "
            "with -100."
        )
    values = [int(value) for value in values]
    bad = sorted(value for value in values if not 0 <= value < num_labels)
    if bad:
        raise ValueError(
            f"{name} has labels {bad[:10]} outside the student's label set 0..{num_labels - 1} "
            f"(num_labels={num_labels}): load the student with the task's number of labels "
            "(`from_pretrained(..., num_labels=N)`), map the labels to 0..N-1, or mark unlabelled examples with -100."
        )
    return values


def check_training_labels(dataset: datasets.Dataset, num_labels: int) -> None:
    """The training set must be a labelled one whose labels fit the student; say when the student has more labels
    than the data has classes (the extra logits are only ever pushed down)."""
    values = check_labels(dataset, num_labels, "train_dataset")
    if values is None:
        raise ValueError(
            f"train_dataset has no 'label' (or 'labels') column (columns: {dataset.column_names}): "
            "TCSDistillationTrainer trains on labelled examples. Add the label column (rename yours with "
            "`dataset.rename_column(name, 'label')`); examples without labels go in `unlabeled_dataset=`, the pool "
            "that only carries the coordinate loss."
        )
    if not values:
        raise ValueError(
            "Every example of train_dataset is unlabelled (-100/None): the student would learn the teacher's "
            "coordinates only, and nothing about the task. Pass the labelled examples as train_dataset and the "
            "unlabelled ones as `unlabeled_dataset=`, the pool that carries the coordinate loss next to them."
        )
    column = label_column(dataset)
    feature = dataset.features[column]
    num_classes = feature.num_classes if isinstance(feature, datasets.ClassLabel) else max(values) + 1
    if num_labels > num_classes:
        logger.warning(
            f"The student has {num_labels} labels but the training data has {num_classes} classes (labels "
            f"0..{num_classes - 1}): the extra {num_labels - num_classes} outputs are trained to never win. Load the "
            f"student with `num_labels={num_classes}` unless the other classes are meant to come later."
        )


def check_unlabeled_pool(
    pool: datasets.Dataset, train_dataset: datasets.Dataset, model: torch.nn.Module, args: TCSConfig
) -> datasets.Dataset:
    """Check the unlabelled pool against the training set; return it without its (empty) label column."""
    if not isinstance(pool, datasets.Dataset):
        raise ValueError(
            f"unlabeled_dataset must be a datasets.Dataset of unlabelled examples, got {type(pool).__name__}: "
            "build one with `datasets.Dataset.from_dict(...)` or `datasets.load_dataset(...)`."
        )
    if len(pool) == 0:
        raise ValueError(
            "unlabeled_dataset is empty: pass the unlabelled examples, or leave unlabeled_dataset=None to train on "
            "the labelled examples only."
        )
    if args.tcs_loss_weight == 0 and args.tcs_lsh_weight == 0:
        raise ValueError(
            "unlabeled_dataset only carries the coordinate loss, which tcs_loss_weight=0 turns off: set "
            "tcs_loss_weight > 0, or leave unlabeled_dataset=None for plain cross-entropy."
        )
    for column in LABEL_COLUMNS:
        if column in pool.column_names:
            labels = [value for value in pool.unique(column) if value is not None and value != IGNORE_INDEX]
            if labels:
                raise ValueError(
                    f"unlabeled_dataset has labels in its {column!r} column (e.g. {sorted(labels)[:5]}): put the "
                    "labelled examples in train_dataset, mark unlabelled ones with -100 or None, or drop the column "
                    f"(`pool.remove_columns({column!r})`)."
                )
            pool = pool.remove_columns(column)
    # The student inputs the training set feeds the model: the pool must have the same ones.
    ignored = {*LABEL_COLUMNS, args.tcs_feature_column, args.tcs_coordinate_column}
    inputs = [column for column in train_dataset.column_names if column not in ignored]
    extra = []
    if args.remove_unused_columns:  # only the columns Trainer keeps: those the model's forward takes
        accepted = inspect.signature(model.forward).parameters
        inputs = [column for column in inputs if column in accepted]
    else:  # every column reaches the collator, so the pool's must be the training set's
        extra = [c for c in pool.column_names if c not in ignored and c not in train_dataset.column_names]
    missing = [column for column in inputs if column not in pool.column_names]
    if missing or extra:
        raise ValueError(
            f"unlabeled_dataset's columns do not match the training set's: missing {missing}, extra {extra} "
            f"(training set: {train_dataset.column_names}, pool: {pool.column_names}). Prepare the pool as the "
            "training set (the same tokenizer or image processor `map`), or remove the extra columns."
        )
    return pool
