"""The one teacher pass: add the teacher's features to a dataset with a single, cached `datasets.map`.

The features are the only thing TCS ever needs from the teacher, so they are computed once, stored as a
fixed-length float32 column, and cached under an explicit fingerprint of (input data, teacher identity, pooling,
preprocessing, dtype, hf_tcs version). A second call with the same inputs runs no teacher forward at all;
another teacher, revision or pooling gets its own cache entry.

Under `accelerate launch` / `torchrun` every process runs the teacher on its own contiguous shard of the rows only,
and every process gets back the whole column, in the original order, under the fingerprint a single process would
give it. An error on one process is raised on every process instead of leaving the others waiting for it. Called on
the main process first (`with training_args.main_process_first(): ...`), the main process runs the whole pass alone and
the others load its cache.
"""

from __future__ import annotations

import glob
import io
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import datasets
import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets.fingerprint import Hasher
from PIL import Image

from .columns import FEATURE_COLUMN, find_input_column, float32_column
from .distributed import distributed_state, enter_teacher_pass, fail_together, shard_bounds
from .teachers import Teacher
from .version import __version__

__all__ = ["precompute_teacher_features"]

logger = logging.getLogger(__name__)

# How `Dataset.map(num_proc=n)` names the cache files of its shards: a later single-process `map` with the same
# fingerprint finds and concatenates them, so following it lets a multi-process teacher pass serve later runs.
_SHARD_SUFFIX = "_{rank:05d}_of_{num_shards:05d}"


def precompute_teacher_features(
    dataset: datasets.Dataset | datasets.DatasetDict,
    teacher: Teacher,
    *,
    input_column: str | None = None,
    batch_size: int = 64,
    output_column: str = FEATURE_COLUMN,
    cache_dir: str | os.PathLike | None = None,
    load_from_cache_file: bool = True,
    desc: str | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """Return `dataset` with one more column, `output_column`, holding the teacher's float32 features.

    Args:
        dataset: a `Dataset` or a `DatasetDict` (every split gets its features) with an image or text column.
        teacher: a `Teacher` from `load_teacher` (which takes the Hub id or folder, revision, pooling and dtype).
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

    In a multi-process run (`accelerate launch`, `torchrun`) every process calls this function with the same dataset.
    When they call it at the same point, each process runs the teacher on its own contiguous shard, on its own device,
    and caches it; then every process reads all the shards back. Called inside `main_process_first`, the main process
    waits `ARRIVAL_TIMEOUT` (15) seconds for the others, runs the whole pass alone, and the others load its cache. The
    cache must be on a filesystem all processes share. A cached file that does not match its input (fewer rows, another
    schema, cut short) is recomputed.
    """
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"precompute_teacher_features takes a loaded Teacher, got {type(teacher).__name__}: pass "
            "`hf_tcs.load_teacher(name_or_path)`, which also sets the revision, pooling and dtype."
        )
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
    reader = f"the {teacher.modality} teacher {teacher.name_or_path!r}"
    input_column, _ = find_input_column(dataset, input_column, modality=teacher.modality, reader=reader)
    fingerprint = features_fingerprint(dataset, teacher, input_column, output_column)
    state = distributed_state()
    teacher_pass = None
    if state is not None:
        teacher_pass = enter_teacher_pass(state, fingerprint, len(dataset))
        fingerprint = teacher_pass.fingerprint
        if teacher.device.type == state.device.type and teacher.device != state.device:
            # "cuda" means cuda:0 until accelerate sets each process's device: every rank's teacher would share it.
            teacher.to(state.device)
    if dataset.cache_files:  # where datasets itself caches a file-backed dataset's map
        cache_file_name = os.path.join(
            os.path.dirname(dataset.cache_files[0]["filename"]), f"cache-{fingerprint}.arrow"
        )
    else:
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
    if teacher_pass is not None and teacher_pass.together:
        if state.is_main_process and load_from_cache_file:  # before any process reads a cached file
            _discard_mismatched_cache(cache_file_name, len(source), output_column, new_features[output_column])
        result = _sharded_map(state, source, encode, fingerprint, cache_file_name, map_kwargs)
    elif teacher_pass is not None and not state.is_main_process:
        # The main process has just run this pass alone: its cache serves this process.
        if not os.path.exists(cache_file_name):
            logger.warning(
                f"This process cannot see the teacher features {cache_file_name} that the main process wrote: it "
                "runs the teacher pass as well. Put the cache on a filesystem all processes share to avoid this."
            )
        with _removing_partial_files_on_sigterm():
            result = source.map(
                encode,
                new_fingerprint=fingerprint,
                cache_file_name=cache_file_name,
                **{**map_kwargs, "load_from_cache_file": True},
            )
    else:  # one process, or the main process alone while the others wait for it
        reporting = teacher_pass.report_outcome() if teacher_pass is not None else nullcontext()
        with reporting, _removing_partial_files_on_sigterm():
            if load_from_cache_file:
                _discard_mismatched_cache(cache_file_name, len(source), output_column, new_features[output_column])
            result = source.map(encode, new_fingerprint=fingerprint, cache_file_name=cache_file_name, **map_kwargs)
    return result.cast_column(input_column, original_feature) if is_image else result


def _sharded_map(
    state: PartialState,
    source: datasets.Dataset,
    encode: Any,
    fingerprint: str,
    cache_file_name: str,
    map_kwargs: dict[str, Any],
) -> datasets.Dataset:
    """The teacher pass of one process among several, all in it together: map its own shard, read every shard back.

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
        with fail_together(state, "The teacher pass"), _removing_partial_files_on_sigterm():
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


def _discard_mismatched_cache(cache_file_name: str, num_rows: int, column: str, feature: Any) -> None:
    """Delete the cached teacher features of `cache_file_name` (whole, or in `map(num_proc=n)` shards) that cannot be
    those of `num_rows` rows: a file cut short, a partial copy, another schema. The pass then recomputes them.

    Reading a file's row count and schema maps it into memory without reading its data.
    """
    prefix, extension = os.path.splitext(cache_file_name)
    pattern = glob.escape(prefix) + "_[0-9][0-9][0-9][0-9][0-9]_of_[0-9][0-9][0-9][0-9][0-9]" + glob.escape(extension)
    for file in [cache_file_name, *sorted(glob.glob(pattern))]:
        if not os.path.exists(file):
            continue
        expected = num_rows
        if file != cache_file_name:  # a shard: prefix_<rank>_of_<shards>.arrow
            rank, num_shards = (int(part) for part in file[len(prefix) + 1 : -len(extension)].split("_of_"))
            start, end = shard_bounds(num_rows, num_shards, rank) if rank < num_shards else (0, -1)
            expected = end - start
        try:
            cached = datasets.Dataset.from_file(file)
            problem = None
            if cached.features.get(column) != feature:
                problem = f"its {column!r} column is {cached.features.get(column)}, not {feature}"
            elif len(cached) != expected:
                problem = f"it holds {len(cached)} rows where the pass gives {expected}"
        except Exception as error:  # pyarrow says "cut short" in many ways
            problem = f"it cannot be read ({type(error).__name__}: {error})"
        if problem is not None:
            logger.warning(
                f"The cached teacher features {file} do not match the dataset ({problem}): recomputing them."
            )
            os.remove(file)


@contextmanager
def _removing_partial_files_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (what `accelerate launch` / `torchrun` send the other processes when one fails or is interrupted)
    into KeyboardInterrupt while a `datasets.map` writes, so that it removes its half-written `tmp*` file."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM) during the teacher pass")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def features_fingerprint(
    dataset: datasets.Dataset, teacher: Teacher, input_column: str, output_column: str = FEATURE_COLUMN
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
