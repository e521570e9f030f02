"""The one teacher pass: add the teacher's features to a dataset with a single, cached `datasets.map`.

The features are the only thing TCS ever needs from the teacher, so they are computed once, stored as a
fixed-length float32 column, and cached under an explicit fingerprint of (input data, teacher identity, pooling,
preprocessing, dtype, hf_tcs version). A second call with the same inputs runs no teacher forward at all;
another teacher, revision or pooling gets its own cache entry.
"""

from __future__ import annotations

import io
import os
from typing import Any

import datasets
import numpy as np
from datasets.fingerprint import Hasher
from PIL import Image

from . import __version__
from .teachers import Teacher, load_teacher

__all__ = ["precompute_teacher_features"]

DEFAULT_FEATURE_COLUMN = "teacher_features"
_TEXT_COLUMN_NAMES = ("text", "sentence", "sentence1", "content", "query")
_STRING_TYPES = ("string", "large_string")


def precompute_teacher_features(
    dataset: datasets.Dataset | datasets.DatasetDict,
    teacher: Teacher | str,
    *,
    input_column: str | None = None,
    batch_size: int = 64,
    output_column: str = DEFAULT_FEATURE_COLUMN,
    cache_dir: str | os.PathLike | None = None,
    load_from_cache_file: bool = True,
    desc: str | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """Return `dataset` with one more column, `output_column`, holding the teacher's float32 features.

    Args:
        dataset: a `Dataset` or a `DatasetDict` (every split gets its features) with an image or text column.
        teacher: a `Teacher` from `load_teacher`, or a name/path to load one with default settings.
        input_column: the column fed to the teacher; detected when not given (the image column for an image
            teacher, a `text`-like string column for a text teacher).
        batch_size: examples per teacher forward.
        output_column: name of the new column (a fixed-length list of `teacher.feature_dim` float32).
        cache_dir: where the features of datasets held in memory are cached (datasets backed by files cache
            next to their own files). Defaults to `<HF_DATASETS_CACHE>/hf_tcs`.
        load_from_cache_file: reuse cached features when the fingerprint matches.
        desc: progress-bar text.

    The input dataset is left untouched; a new dataset is returned.
    """
    if not isinstance(teacher, Teacher):
        teacher = load_teacher(teacher)
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(
            {
                split: precompute_teacher_features(
                    split_dataset,
                    teacher,
                    input_column=input_column,
                    batch_size=batch_size,
                    output_column=output_column,
                    cache_dir=cache_dir,
                    load_from_cache_file=load_from_cache_file,
                    desc=desc or f"Teacher pass ({split})",
                )
                for split, split_dataset in dataset.items()
            }
        )
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"precompute_teacher_features takes a datasets.Dataset or DatasetDict, got {type(dataset).__name__}: "
            "wrap your data with `datasets.Dataset.from_dict(...)` or `datasets.load_dataset(...)`."
        )
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: the teacher pass needs at least one example.")
    if output_column in dataset.column_names:
        raise ValueError(
            f"The dataset already has a column {output_column!r}: pass another `output_column=`, or drop it with "
            f"`dataset.remove_columns({output_column!r})` to recompute it."
        )
    input_column = resolve_input_column(dataset, teacher, input_column)
    fingerprint = features_fingerprint(dataset, teacher, input_column, output_column)
    cache_file_name = None
    if not dataset.cache_files:
        # datasets only caches file-backed datasets by itself; give in-memory ones a file under our cache dir.
        cache_dir = cache_dir or os.path.join(datasets.config.HF_DATASETS_CACHE, "hf_tcs")
        os.makedirs(cache_dir, exist_ok=True)
        cache_file_name = os.path.join(cache_dir, f"teacher-features-{fingerprint}.arrow")

    is_image = teacher.modality == "image"
    original_feature = dataset.features[input_column]
    # Images are decoded by us, not by datasets, so that a broken file is reported with its row number.
    source = dataset.cast_column(input_column, datasets.Image(decode=False)) if is_image else dataset
    new_features = source.features.copy()
    new_features[output_column] = datasets.List(datasets.Value("float32"), length=teacher.feature_dim)

    def encode(values: list[Any], indices: list[int]) -> dict[str, np.ndarray]:
        if is_image:
            values = [_decode_image(value, row, input_column) for value, row in zip(values, indices, strict=True)]
        else:
            _check_texts(values, indices, input_column)
        features = teacher.encode(values)
        bad = ~np.isfinite(features).all(axis=1)
        if bad.any():
            rows = [indices[i] for i in np.flatnonzero(bad)[:5]]
            raise ValueError(
                f"The teacher {teacher.name_or_path!r} produced NaN/inf features for {int(bad.sum())} example(s) "
                f"(rows {rows}...). This usually means a half-precision overflow: load the teacher in float32 "
                "(`load_teacher(..., dtype=torch.float32)`), or drop those rows."
            )
        return {output_column: features}

    result = source.map(
        encode,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        input_columns=[input_column],
        features=new_features,
        new_fingerprint=fingerprint,
        cache_file_name=cache_file_name,
        load_from_cache_file=load_from_cache_file,
        desc=desc or f"Teacher pass ({teacher.name_or_path})",
    )
    return result.cast_column(input_column, original_feature) if is_image else result


def features_fingerprint(
    dataset: datasets.Dataset, teacher: Teacher, input_column: str, output_column: str = DEFAULT_FEATURE_COLUMN
) -> str:
    """The cache key of a teacher pass: input data, teacher identity, columns, dtype and hf_tcs version."""
    return Hasher.hash(
        {
            "dataset": dataset._fingerprint,
            "teacher": teacher.fingerprint,
            "input_column": input_column,
            "output_column": output_column,
            "dtype": "float32",
            "hf_tcs": __version__,
        }
    )


def resolve_input_column(dataset: datasets.Dataset, teacher: Teacher, input_column: str | None) -> str:
    """The column the teacher reads: checked when given, detected from the feature types otherwise."""
    features = dataset.features
    wanted = "an image column (datasets.Image)" if teacher.modality == "image" else "a text column (string)"
    if input_column is not None:
        if input_column not in features:
            raise ValueError(
                f"Column {input_column!r} is not in the dataset (columns: {dataset.column_names}): pass one of "
                "them as `input_column=`."
            )
        if not _column_matches(features[input_column], teacher.modality):
            raise ValueError(
                f"Column {input_column!r} holds {features[input_column]}, but the {teacher.modality} teacher "
                f"{teacher.name_or_path!r} needs {wanted}: pass the right `input_column=` (or cast the column, "
                "e.g. `dataset.cast_column(col, datasets.Image())` for image paths or bytes)."
            )
        return input_column
    candidates = [name for name, feature in features.items() if _column_matches(feature, teacher.modality)]
    if teacher.modality == "text" and len(candidates) > 1:
        named = [name for name in _TEXT_COLUMN_NAMES if name in candidates]
        candidates = named[:1] or candidates
    if len(candidates) != 1:
        found = f"several ({candidates})" if candidates else "none"
        raise ValueError(
            f"The {teacher.modality} teacher {teacher.name_or_path!r} needs {wanted} and the dataset has {found} "
            f"(columns: {dataset.column_names}): pass `input_column=`."
        )
    return candidates[0]


def _column_matches(feature: Any, modality: str) -> bool:
    if modality == "image":
        return isinstance(feature, datasets.Image)
    return isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES


def _decode_image(value: Any, row: int, column: str) -> Image.Image:
    """Decode one undecoded `datasets.Image` cell (bytes or path), naming the row when it is not an image."""
    try:
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        image = Image.open(source)
        image.load()
        return image
    except Exception as error:
        raise ValueError(
            f"Row {row} of column {column!r} could not be decoded as an image ({type(error).__name__}: {error}). "
            "Fix or drop the broken rows (e.g. with `dataset.filter`) and run the teacher pass again."
        ) from error


def _check_texts(values: list[Any], indices: list[int], column: str) -> None:
    for value, row in zip(values, indices, strict=True):
        if not isinstance(value, str):
            raise ValueError(
                f"Row {row} of column {column!r} is {value!r}, not a string: fill or drop the missing texts "
                "(e.g. with `dataset.filter`) and run the teacher pass again."
            )
