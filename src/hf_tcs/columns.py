"""The columns of a TCS dataset: what they are called, what marks an unlabelled example, the type of the float32
columns hf_tcs adds (which carries their provenance), and which column the teacher and the student read.

Every other module takes these facts from here, so that the trainer, the teacher pass, the coordinate system and the
`hf-tcs` jobs cannot disagree on them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import datasets

__all__ = [
    "COORDINATE_COLUMN",
    "FEATURE_COLUMN",
    "IGNORE_INDEX",
    "LABEL_COLUMN",
    "LABEL_COLUMNS",
    "column_provenance",
    "find_input_column",
    "float32_column",
    "label_column",
]

Modality = Literal["image", "text"]

IGNORE_INDEX = -100  # the label of an unlabelled example, as in transformers
LABEL_COLUMN = "label"  # the label column the `hf-tcs` jobs write
LABEL_COLUMNS = (LABEL_COLUMN, "labels")  # the label column's names, as transformers' Trainer reads them
FEATURE_COLUMN = "teacher_features"
COORDINATE_COLUMN = "tcs_coordinates"
# Where a column's provenance lives: the `id` of its float32 value type, which datasets keeps through map, select,
# filter, shuffle, concatenation, save_to_disk / load_from_disk and Parquet (push_to_hub / load_dataset).
_PROVENANCE_KEY = "hf_tcs"
_TEXT_COLUMN_NAMES = ("text", "sentence", "sentence1", "content", "query")  # preferred among several string columns
_STRING_TYPES = ("string", "large_string")
# What a fit and a projection add to the teacher's provenance (see `features_provenance`, `add_coordinates`).
_NOT_TEACHER = ("dataset_fingerprint", "feature_column", "coordinate_system", "num_components")


def label_column(dataset: datasets.Dataset) -> str | None:
    """The dataset's label column (`label`, else `labels`), or None when it has none."""
    return next((name for name in LABEL_COLUMNS if name in dataset.column_names), None)


def column_modality(feature: Any) -> Modality | None:
    """`"image"` for a `datasets.Image` column, `"text"` for a string column, else None."""
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES:
        return "text"
    return None


def find_input_column(
    dataset: datasets.Dataset,
    column: str | None = None,
    *,
    modality: Modality | None = None,
    reader: str = "the teacher",
    option: str = "`input_column=`",
) -> tuple[str, Modality]:
    """The column `reader` reads, and its modality: checked when given, detected from the feature types otherwise.

    Detected: the one column of `modality` (any modality when None: the one image column, else the one string
    column); among several string columns `text`, `sentence`, ... wins. `option` is how the caller names the column
    in its errors (`input_column=`, `--teacher_input_column`).
    """
    features = dataset.features
    wanted = {
        "image": "an image column (datasets.Image)",
        "text": "a text column (string)",
        None: "an image or text column",
    }
    if column is not None:
        if column not in features:
            raise ValueError(
                f"Column {column!r} is not in the dataset (columns: {dataset.column_names}): pass one of them as "
                f"{option}."
            )
        found = column_modality(features[column])
        if found is None or (modality is not None and found != modality):
            raise ValueError(
                f"Column {column!r} holds {features[column]}, but {reader} needs {wanted[modality]}: pass the right "
                f"{option} (or cast the column, e.g. `dataset.cast_column(col, datasets.Image())` for image paths or "
                "bytes)."
            )
        return column, found
    for kind in (modality,) if modality is not None else ("image", "text"):
        candidates = [name for name, feature in features.items() if column_modality(feature) == kind]
        if kind == "text" and len(candidates) > 1:
            candidates = [name for name in _TEXT_COLUMN_NAMES if name in candidates][:1] or candidates
        if len(candidates) == 1:
            return candidates[0], kind
        if candidates:
            raise ValueError(
                f"{reader[0].upper()}{reader[1:]} needs {wanted[kind]} and the dataset has several ({candidates}): "
                f"pick one with {option}."
            )
    raise ValueError(
        f"{reader[0].upper()}{reader[1:]} needs {wanted[modality]} and the dataset has none (columns: "
        f"{dataset.column_names}): cast image paths or bytes to datasets.Image, or pass the column with {option}."
    )


def float32_column(length: int, provenance: dict[str, Any]) -> datasets.List:
    """The type of a fixed-length float32 column that carries its provenance (see `column_provenance`)."""
    record = json.dumps({_PROVENANCE_KEY: provenance}, sort_keys=True, default=str)
    return datasets.List(datasets.Value("float32", id=record), length=length)


def column_provenance(dataset: datasets.Dataset, column: str) -> dict[str, Any]:
    """What hf_tcs recorded about the column that it made: for teacher features the teacher's identity (`teacher`,
    `teacher_revision`, `pooling`, ..., `teacher_fingerprint`), for coordinates also the `coordinate_system` that
    projected them. Empty for a column hf_tcs did not make (or one rebuilt from plain Python lists or pandas)."""
    feature = dataset.features.get(column) if isinstance(dataset, datasets.Dataset) else None
    record = getattr(getattr(feature, "feature", None), "id", None)
    try:
        provenance = json.loads(record).get(_PROVENANCE_KEY) if record else None
    except (json.JSONDecodeError, AttributeError):
        provenance = None
    return provenance if isinstance(provenance, dict) else {}


def teacher_provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    """The teacher's part of a provenance record (what `Teacher.to_dict` and the teacher pass recorded), without what
    the coordinate system and the fit added."""
    return {key: value for key, value in provenance.items() if key not in _NOT_TEACHER}


def features_provenance(dataset: datasets.Dataset, feature_column: str) -> dict[str, Any]:
    """The provenance a coordinate system fitted on `dataset`'s features records: the teacher (when hf_tcs made the
    column), the dataset's fingerprint and the column."""
    return {
        **column_provenance(dataset, feature_column),
        "dataset_fingerprint": dataset._fingerprint,
        "feature_column": feature_column,
    }
