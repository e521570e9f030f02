"""The one teacher pass: add the teacher's features to a dataset with a single, cached `datasets.map`.

The features are the only thing TCS ever needs from the teacher, so they are computed once, stored as a
fixed-length float32 column, and cached under an explicit fingerprint of (input data, teacher identity, pooling,
preprocessing, dtype, hf_tcs version). A second call with the same inputs runs no teacher forward at all;
another teacher, revision or pooling gets its own cache entry.

Under `accelerate launch` / `torchrun` every process runs the teacher on its own contiguous shard of the rows only,
and every process gets back the whole column, in the original order, under the fingerprint a single process would
give it. An error on one process is raised on every process instead of leaving the others waiting for it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import datasets
import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets.fingerprint import Hasher
from PIL import Image

from . import __version__
from .teachers import Teacher, load_teacher

__all__ = ["column_provenance", "precompute_teacher_features"]

DEFAULT_FEATURE_COLUMN = "teacher_features"
# Where a column's provenance lives: the `id` of its float32 value type, which datasets keeps through map, select,
# filter, shuffle, concatenation, save_to_disk / load_from_disk and Parquet (push_to_hub / load_dataset).
_PROVENANCE_KEY = "hf_tcs"
_TEXT_COLUMN_NAMES = ("text", "sentence", "sentence1", "content", "query")
_STRING_TYPES = ("string", "large_string")
# How `Dataset.map(num_proc=n)` names the cache files of its shards: a later single-process `map` with the same
# fingerprint finds and concatenates them, so following it lets a multi-process teacher pass serve later runs.
_SHARD_SUFFIX = "_{rank:05d}_of_{num_shards:05d}"


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

    The input dataset is left untouched; a new dataset is returned. The features are float32 whatever dtype the
    teacher computes in, and that dtype is part of the cache key.

    In a multi-process run (`accelerate launch`, `torchrun`) every process calls this function with the same dataset,
    at the same point: not under `main_process_first`, where the others would wait for the main process while it
    waits for them. Each process runs the teacher on its own contiguous shard, on its own device, and caches it; then
    every process reads all the shards back. The cache must be on a filesystem all processes share.
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
    state = _distributed_state()
    if state is not None:
        fingerprint = _agree_on_fingerprint(state, fingerprint, len(dataset))
        if teacher.device.type == state.device.type and teacher.device != state.device:
            # "cuda" means cuda:0 until accelerate sets each process's device: every rank's teacher would share it.
            teacher.to(state.device)
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
    # The teacher alone, nothing of this split: every split (and pool) of one teacher gets the same type.
    provenance = {**teacher.to_dict(), "teacher_fingerprint": teacher.fingerprint}
    new_features[output_column] = float32_column(teacher.feature_dim, provenance)

    def encode(values: list[Any], indices: list[int], row_offset: int = 0) -> dict[str, np.ndarray]:
        # A shard's indices start at 0: errors name rows of the whole dataset.
        indices = [row_offset + index for index in indices]
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

    map_kwargs = dict(
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        input_columns=[input_column],
        features=new_features,
        load_from_cache_file=load_from_cache_file,
        desc=desc or f"Teacher pass ({teacher.name_or_path})",
    )
    if state is None:
        result = source.map(encode, new_fingerprint=fingerprint, cache_file_name=cache_file_name, **map_kwargs)
    else:
        if cache_file_name is None:  # where datasets itself caches a file-backed dataset's map
            cache_file_name = os.path.join(
                os.path.dirname(source.cache_files[0]["filename"]), f"cache-{fingerprint}.arrow"
            )
        result = _sharded_map(state, source, encode, fingerprint, cache_file_name, map_kwargs)
    return result.cast_column(input_column, original_feature) if is_image else result


def _sharded_map(
    state: PartialState,
    source: datasets.Dataset,
    encode: Any,
    fingerprint: str,
    cache_file_name: str,
    map_kwargs: dict[str, Any],
) -> datasets.Dataset:
    """The teacher pass of one process among several: map its own shard, then read every shard back.

    Shards are cached as `Dataset.map(num_proc=n)` caches its own (`<cache file>_00001_of_00004.arrow`), and the
    concatenation gets the single-process `fingerprint`: a later single-process pass loads these shards instead of
    running the teacher, and the whole-dataset cache file of an earlier single-process pass serves this one.
    """
    num_shards = min(state.num_processes, len(source))
    prefix, extension = os.path.splitext(cache_file_name)
    suffixes = [_SHARD_SUFFIX.format(rank=rank, num_shards=num_shards) for rank in range(num_shards)]
    info = source.info.copy()
    info.features = map_kwargs["features"]
    cached = map_kwargs["load_from_cache_file"] and os.path.exists(cache_file_name)
    if all(gather_object([cached])):
        files = [cache_file_name]
    else:
        files = [prefix + suffix + extension for suffix in suffixes]
        rank = state.process_index
        with fail_together(state, "The teacher pass"):
            if rank < num_shards:
                start, end = shard_bounds(len(source), num_shards, rank)
                source.select(range(start, end)).map(
                    encode,
                    fn_kwargs={"row_offset": start},
                    new_fingerprint=fingerprint + suffixes[rank],
                    cache_file_name=files[rank],
                    **{**map_kwargs, "desc": f"{map_kwargs['desc']} [shard {rank + 1}/{num_shards}]"},
                )
    with fail_together(state, "Reading the teacher features"):
        missing = [file for file in files if not os.path.exists(file)]
        if missing:
            raise FileNotFoundError(
                f"This process cannot see the teacher features {missing} that other processes wrote: a multi-process "
                "teacher pass needs a cache on a filesystem shared by all processes (save the dataset there, or pass "
                "`cache_dir=` for a dataset held in memory)."
            )
        shards = [datasets.Dataset.from_file(file, info=info, split=source.split) for file in files]
        result = shards[0] if len(shards) == 1 else datasets.concatenate_datasets(shards)
    # What `map` does to a cached result: it is the dataset a single-process pass gives, so it gets its fingerprint.
    result._fingerprint = fingerprint
    return result


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


def shard_bounds(num_rows: int, num_shards: int, index: int) -> tuple[int, int]:
    """Rows ``[start, end)`` of contiguous shard ``index``: in order, sizes differing by at most one."""
    size, remainder = divmod(num_rows, num_shards)
    start = index * size + min(index, remainder)
    return start, start + size + int(index < remainder)


def _distributed_state() -> PartialState | None:
    """accelerate's state when several processes were launched (accelerate launch, torchrun), else None."""
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not initialized and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None  # one process: accelerate's state is left to TrainingArguments / Accelerator to set up
    # Without an accelerator, accelerate joins the launched processes (gloo) only when told to run on CPU; an
    # already set up state (TrainingArguments, Accelerator) is returned as it is.
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    state = PartialState(cpu=not has_accelerator)
    return state if state.num_processes > 1 else None


def _agree_on_fingerprint(state: PartialState, fingerprint: str, num_rows: int) -> str:
    """Rank 0's fingerprint, once every rank is known to hold as many rows."""
    gathered = gather_object([(fingerprint, num_rows)])
    lengths = [length for _, length in gathered]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"The processes passed datasets of different lengths to the teacher pass ({lengths} rows, by rank): every "
            "process must pass the same dataset; each one then runs the teacher on its own shard."
        )
    # The same rows can have different fingerprints on different ranks (datasets draws a random one after a
    # transform it cannot hash): rank 0's names the cache for all of them.
    return gathered[0][0]


@contextmanager
def fail_together(state: PartialState | None, action: str) -> Iterator[None]:
    """Run the body on every process; when it raises on any of them, raise on all of them.

    The failing process re-raises its own error; the others raise a RuntimeError that names the failing rank and
    carries its message. Without this, the processes that succeeded would wait in their next collective operation
    for one that never comes, until the process group's timeout (30 minutes by default). Costs one all-gather of a
    status; a no-op in a single process.
    """
    if state is None or state.num_processes == 1:
        yield
        return
    error = None
    try:
        yield
    except Exception as exception:
        error = exception
    statuses = gather_object([None if error is None else f"{type(error).__name__}: {error}"])
    if error is not None:
        raise error
    failed = [rank for rank, status in enumerate(statuses) if status is not None]
    if failed:
        raise RuntimeError(
            f"{action} failed on rank {failed[0]} of {state.num_processes}"
            + (f" (and on ranks {failed[1:]})" if len(failed) > 1 else "")
            + f": {statuses[failed[0]]}"
        )


def features_fingerprint(
    dataset: datasets.Dataset, teacher: Teacher, input_column: str, output_column: str = DEFAULT_FEATURE_COLUMN
) -> str:
    """The cache key of a teacher pass: input data, teacher identity, columns, compute dtype and hf_tcs version."""
    return Hasher.hash(
        {
            "dataset": dataset._fingerprint,
            "teacher": teacher.fingerprint,
            "input_column": input_column,
            "output_column": output_column,
            # The features are stored as float32, but a bfloat16 teacher computes other ones.
            "dtype": str(teacher.dtype).removeprefix("torch."),
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
