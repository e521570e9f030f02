"""The data side of the `hf-tcs` jobs: load the splits, name the labels, find the input column, feed the student.

`load_task_data` turns `DataArguments` (a Hub id, a local folder or data files, as in the transformers `run_*.py`
examples) into a `TaskData`: the training and evaluation splits with an integer `label` column, the label names and
the one image or text column that both the teacher and the student read. `student_inputs` then gives the student its
own view of that column: its image processor (with optional augmentation) on the fly, or its tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from .columns import IGNORE_INDEX, LABEL_COLUMN, LABEL_COLUMNS, find_input_column

__all__ = [
    "DataArguments",
    "TaskData",
    "encode_labels",
    "image_size",
    "load_task_data",
    "student_inputs",
]

_EVAL_SPLITS = ("validation", "test")
_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class DataArguments:
    """Where the task's data comes from, and which part of it is used."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset id, or a local folder: an image folder (imagefolder), a folder of csv/json/parquet "
            "files, or a dataset saved with save_to_disk (e.g. the output of `hf-tcs precompute`)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration name of the dataset."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision of the dataset."})
    train_file: str | None = field(
        default=None, metadata={"help": "Training data file (csv, tsv, json, jsonl or parquet), instead of a dataset."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Evaluation data file, in the same format as --train_file."}
    )
    train_split: str = field(default="train", metadata={"help": "Split the student trains on."})
    eval_split: str | None = field(
        default=None,
        metadata={"help": "Split to evaluate on; 'validation' or 'test' when present. 'none' skips evaluation."},
    )
    label_column: str | None = field(
        default=None,
        metadata={
            "help": "Label column (a ClassLabel, or strings/ints whose unique values become the classes); 'label' "
            "or 'labels' when not set. The image or text column is TCSConfig's --teacher_input_column."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Keep this many training examples (shuffled with --data_seed or --seed), for quick runs."},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep this many evaluation examples (shuffled with --data_seed or --seed)."}
    )
    unlabeled_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled pool, as --dataset_name (Hub id or local folder): its examples, without labels, are "
            "added to every training batch with the coordinate loss only (see --tcs_unlabeled_ratio)."
        },
    )
    unlabeled_file: str | None = field(
        default=None,
        metadata={"help": "Unlabelled pool as a data file (csv, tsv, json, jsonl or parquet), instead of a dataset."},
    )
    unlabeled_split: str = field(default="train", metadata={"help": "Split of --unlabeled_dataset_name to use."})

    def __post_init__(self):
        if self.dataset_name is not None and self.train_file is not None:
            raise ValueError("Pass either --dataset_name (a Hub id or a local folder) or --train_file, not both.")
        if self.validation_file is not None and self.train_file is None:
            raise ValueError("--validation_file goes with --train_file; with --dataset_name use --eval_split.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} {value}: keep at least one example, or leave it unset.")
        if self.unlabeled_dataset_name is not None and self.unlabeled_file is not None:
            raise ValueError(
                "Pass either --unlabeled_dataset_name or --unlabeled_file for the unlabelled pool, not both."
            )


@dataclass
class TaskData:
    """A classification task: its splits (integer `label`, -100 for unlabelled examples), labels and input column."""

    splits: datasets.DatasetDict
    train_split: str
    eval_split: str | None
    input_column: str
    modality: str
    label_names: list[str]
    unlabeled: datasets.Dataset | None = None  # the unlabelled pool, raw (its label column dropped, if any)

    @property
    def train(self) -> datasets.Dataset:
        return self.splits[self.train_split]

    @property
    def eval(self) -> datasets.Dataset | None:
        return self.splits[self.eval_split] if self.eval_split else None


def load_task_data(args: DataArguments, *, seed: int = 42, input_column: str | None = None) -> TaskData:
    """Load the training (and evaluation) split, encode the labels and find the input column.

    Labels are named from the full splits, before `max_train_samples` / `max_eval_samples` shuffle and cut them, so
    that a quick run keeps every class of the task.
    """
    splits = _load_splits(args)
    eval_split = _resolve_eval_split(splits, args.eval_split, args.train_split)
    splits = datasets.DatasetDict({name: splits[name] for name in (args.train_split, eval_split) if name})
    splits, label_names = encode_labels(splits, args.label_column)
    column, modality = find_input_column(
        splits[args.train_split], input_column, reader="the teacher and the student", option="--teacher_input_column"
    )
    if modality == "text":
        for name, split in splits.items():
            check_texts(split, column, name)
    for name, limit in ((args.train_split, args.max_train_samples), (eval_split, args.max_eval_samples)):
        if name and limit is not None and limit < len(splits[name]):
            splits[name] = splits[name].shuffle(seed=seed).select(range(limit))
    unlabeled = _load_unlabeled(args, column)
    if modality == "text" and unlabeled is not None:
        check_texts(unlabeled, column, "unlabeled")
    return TaskData(splits, args.train_split, eval_split, column, modality, label_names, unlabeled)


def _load_unlabeled(args: DataArguments, input_column: str) -> datasets.Dataset | None:
    """The unlabelled pool of --unlabeled_dataset_name / --unlabeled_file; it needs the training set's input column.

    A label column holding only -100 / missing values is dropped; one with labels is left for the trainer to refuse.
    """
    if args.unlabeled_dataset_name is None and args.unlabeled_file is None:
        return None
    name = args.unlabeled_file or args.unlabeled_dataset_name
    option = "--unlabeled_file" if args.unlabeled_file else "--unlabeled_dataset_name"
    split = "train" if args.unlabeled_file else args.unlabeled_split
    source = DataArguments(dataset_name=args.unlabeled_dataset_name, train_file=args.unlabeled_file, train_split=split)
    splits = _load_splits(source)
    if source.train_split not in splits:
        raise ValueError(
            f"{option} {name} has no split {source.train_split!r} (splits: {list(splits)}): pass --unlabeled_split."
        )
    pool = splits[source.train_split]
    if input_column not in pool.column_names:
        raise ValueError(
            f"{option} {name} has no {input_column!r} column, the training set's input column (its columns: "
            f"{pool.column_names}): rename its image or text column to {input_column!r}."
        )
    for column in LABEL_COLUMNS:
        if column in pool.column_names and all(v is None or v == IGNORE_INDEX for v in pool.unique(column)):
            pool = pool.remove_columns(column)
    return pool


def check_texts(dataset: datasets.Dataset, column: str, split: str) -> None:
    """Every row of a text split must hold a non-empty text: the student's tokenizer would fail on None with a
    traceback, and an empty text trains (or scores) on nothing but special tokens."""
    for row, text in enumerate(dataset[column]):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"Row {row} of the {split!r} split has {'an empty' if isinstance(text, str) else 'no'} text in column "
                f"{column!r} ({text!r}): fill or drop the rows without text (e.g. "
                f"`dataset.filter(lambda example: bool(example[{column!r}]))`) and run again."
            )


def _load_splits(args: DataArguments) -> datasets.DatasetDict:
    if args.dataset_name is None and args.train_file is None:
        raise ValueError("No data: pass --dataset_name (a Hub id or a local folder) or --train_file.")
    if args.train_file is not None:
        files = {"train": args.train_file, "validation": args.validation_file}
        files = {split: path for split, path in files.items() if path}
        builders = {_FILE_BUILDERS.get(Path(path).suffix.lower()) for path in files.values()}
        if None in builders or len(builders) != 1:
            raise ValueError(
                f"Data files {list(files.values())}: use csv, tsv, json, jsonl or parquet files, all of one format."
            )
        for path in files.values():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Data file {path!r} does not exist.")
        builder = builders.pop()
        options = {"delimiter": "\t"} if Path(args.train_file).suffix.lower() == ".tsv" else {}
        return datasets.load_dataset(builder, data_files=files, **options)
    path = Path(args.dataset_name)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        return datasets.DatasetDict({"train": loaded}) if isinstance(loaded, datasets.Dataset) else loaded
    return datasets.load_dataset(args.dataset_name, args.dataset_config_name, revision=args.dataset_revision)


def _resolve_eval_split(splits: datasets.DatasetDict, eval_split: str | None, train_split: str) -> str | None:
    if train_split not in splits:
        raise ValueError(f"The dataset has no split {train_split!r} (splits: {list(splits)}): pass --train_split.")
    if eval_split is not None:
        if eval_split.lower() == "none":
            return None
        if eval_split not in splits:
            raise ValueError(f"The dataset has no split {eval_split!r} (splits: {list(splits)}): pass --eval_split.")
        return eval_split
    return next((name for name in _EVAL_SPLITS if name in splits and name != train_split), None)


def encode_labels(
    splits: datasets.DatasetDict, label_column: str | None = None
) -> tuple[datasets.DatasetDict, list[str]]:
    """Give every split an integer `label` column and return the class names.

    A `ClassLabel` column keeps its names. Otherwise the sorted unique values over all splits become the classes
    (ints keep their order, strings are sorted); missing values and -100 mark unlabelled examples.
    """
    first = next(iter(splits.values()))
    column = label_column or next((name for name in LABEL_COLUMNS if name in first.column_names), None)
    if column is None or column not in first.column_names:
        wanted = repr(label_column) if label_column else "'label' or 'labels'"
        raise ValueError(f"The dataset has no {wanted} column (columns: {first.column_names}): pass --label_column.")
    feature = first.features[column]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
    else:
        values = set()
        for split in splits.values():
            values.update(value for value in split.unique(column) if value is not None and value != IGNORE_INDEX)
        if not values or not all(isinstance(value, int | str) for value in values):
            raise ValueError(
                f"Label column {column!r} holds {feature}: use a column of class names or class ids (ClassLabel, "
                "strings or ints), and pass it as --label_column."
            )
        # A column mixing ints and strings (e.g. read from json) is compared as strings.
        key = str if len({type(value) for value in values}) > 1 else _identity
        ordered = sorted({key(value) for value in values})
        names = [str(value) for value in ordered]
        index = {value: i for i, value in enumerate(ordered)}

        def to_ids(batch: dict[str, list]) -> dict[str, list[int]]:
            return {
                column: [
                    IGNORE_INDEX if value is None else index.get(key(value), IGNORE_INDEX) for value in batch[column]
                ]
            }

        encoded = {}
        for name, split in splits.items():
            features = split.features.copy()
            features[column] = datasets.Value("int64")
            encoded[name] = split.map(to_ids, batched=True, features=features, desc="Encoding labels")
        splits = datasets.DatasetDict(encoded)
        if not any(IGNORE_INDEX in split.unique(column) for split in splits.values()):
            splits = splits.cast_column(column, datasets.ClassLabel(names=names))
    if column != LABEL_COLUMN:
        if LABEL_COLUMN in first.column_names:
            raise ValueError(
                f"The dataset has both a {LABEL_COLUMN!r} column and the label column {column!r}: rename or drop one."
            )
        splits = splits.rename_column(column, LABEL_COLUMN)
    return splits, names


def _identity(value: Any) -> Any:
    return value


def student_inputs(
    dataset: datasets.Dataset,
    processor: Any,
    *,
    input_column: str,
    modality: str,
    augment: bool = False,
    max_length: int | None = None,
    keep_columns: Sequence[str] = (),
) -> datasets.Dataset:
    """The student's view of a split: what its `forward` takes, `labels`, and those of `keep_columns` it has.

    Images go through the student's image processor on the fly (`with_transform`), after a random resized crop and
    a horizontal flip when `augment` is set (the teacher only ever sees the clean images). Texts are tokenized once,
    with a cached `map`, and the text column is dropped.
    """
    if modality == "text":
        return dataset.map(
            lambda batch: processor(batch[input_column], truncation=True, max_length=max_length),
            batched=True,
            remove_columns=[input_column],
            desc="Tokenizing for the student",
        )
    keep = [column for column in keep_columns if column in dataset.column_names]
    transform = _image_transform(processor, input_column, _augmentation(processor) if augment else None, keep)
    labels = [LABEL_COLUMN] if LABEL_COLUMN in dataset.column_names else []  # an unlabelled pool has none
    return dataset.with_transform(transform, columns=[input_column, *labels, *keep])


def _image_transform(processor: Any, column: str, augmentation: Callable | None, keep: list[str]) -> Callable:
    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images = [image.convert("RGB") for image in batch[column]]
        if augmentation is not None:
            images = [augmentation(image) for image in images]
        inputs = {"pixel_values": processor(images=images, return_tensors="pt")["pixel_values"]}
        if LABEL_COLUMN in batch:
            inputs["labels"] = batch[LABEL_COLUMN]
        inputs.update({name: batch[name] for name in keep})
        return inputs

    return transform


def _augmentation(processor: Any) -> Callable:
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(image_size(processor)), v2.RandomHorizontalFlip()])


def image_size(processor: Any) -> int | tuple[int, int]:
    """The input size an image processor produces: (height, width), or the short side when it only resizes that."""
    data_config = getattr(processor, "data_config", None)  # timm's processor
    if data_config:
        return tuple(data_config["input_size"][-2:])
    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size

    def get(key: str) -> int | None:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    if get("height") and get("width"):
        return get("height"), get("width")
    if get("shortest_edge"):
        return get("shortest_edge")
    raise ValueError(f"Could not read the input size of {type(processor).__name__} ({size}): augmentation needs it.")


class TCSDataCollator:
    """Collates the student's inputs with the wrapped collator and the teacher coordinates as a float32 tensor.

    Missing labels (`None`) become -100, so unlabelled examples can sit in the same batch as labelled ones. The
    teacher-feature column, never an input of the student, is dropped even with `remove_unused_columns=False`.
    """

    def __init__(self, collator, coordinate_column: str, feature_column: str):
        self.collator = collator
        self.coordinate_column = coordinate_column
        self.feature_column = feature_column

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        features = [dict(example) for example in features]  # never mutate the dataset's rows
        coordinates = [example.pop(self.coordinate_column, None) for example in features]
        for example in features:
            example.pop(self.feature_column, None)
            for key in LABEL_COLUMNS:
                if key in example and example[key] is None:
                    example[key] = IGNORE_INDEX
        batch = self.collator(features)
        if coordinates[0] is not None:
            batch[self.coordinate_column] = torch.as_tensor(np.asarray(coordinates, dtype=np.float32))
        return batch
