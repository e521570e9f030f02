"""The student's targets: the teacher coordinates of the training set (and of the unlabelled pool), and their scale.

`prepare_targets` is the step between the raw data and training. It runs the teacher pass on the datasets that have
neither teacher features nor coordinates (the teacher is loaded for it and freed right after), fits the coordinate
system unless one is given, adds the coordinate column, checks that the coordinates are finite and come from that
coordinate system, and computes the per-coordinate scale the coordinate loss compares them at (and the eLSH loss's
projection). `TCSDistillationTrainer` calls it when it is built; a script that must give the student its own view of
the data after the teacher pass (the `hf-tcs` jobs) calls it first and hands the trainer its output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

from .columns import teacher_provenance
from .config import TCSConfig
from .coordinates import (
    CoordinateSystem,
    check_coordinate_column,
    check_finite_coordinates,
    fit_coordinate_system,
    target_scale,
)
from .features import precompute_teacher_features
from .losses import lsh_bias, lsh_projection
from .teachers import Teacher, free_teacher, load_configured_teacher, teacher_identity

__all__ = ["Targets", "prepare_targets"]


@dataclass
class Targets:
    """The training set and pool with their coordinate columns, and what the coordinate losses need.

    Attributes:
        train_dataset / unlabeled_dataset: the datasets with the coordinate column (the pool None without one).
        coordinate_system: the one that made the coordinates; None when the training set came with a coordinate
            column and no coordinate system (the scale then comes from the column's own variances).
        num_coordinates: k, the width of the coordinate column.
        scale: (k,) float32, what each teacher coordinate is multiplied by before the loss compares it.
        loss_dims: D, the dimension the coordinate loss is normalised by (the teacher's feature dimension, or k).
        teacher_info: the teacher's identity as far as it is known (for the model card).
        teacher_pass_seconds: the time of the teacher passes run here (None when none ran).
        lsh_projection / lsh_bias: the eLSH loss's hash functions, when `tcs_lsh_weight > 0`.
    """

    train_dataset: datasets.Dataset
    unlabeled_dataset: datasets.Dataset | None
    coordinate_system: CoordinateSystem | None
    num_coordinates: int
    scale: torch.Tensor
    loss_dims: int
    teacher_info: dict[str, Any]
    teacher_pass_seconds: float | None = None
    lsh_projection: torch.Tensor | None = None
    lsh_bias: torch.Tensor | None = None


def prepare_targets(
    args: TCSConfig,
    train_dataset: datasets.Dataset,
    *,
    coordinate_system: CoordinateSystem | None = None,
    teacher: Teacher | None = None,
    unlabeled_dataset: datasets.Dataset | None = None,
) -> Targets:
    """Give the training set (and the pool) teacher coordinates, and compute their scale.

    Args:
        args: the columns (`tcs_feature_column`, `tcs_coordinate_column`), the teacher to load when a pass is needed
            and no `teacher` is given (`teacher_model_name_or_path`, its revision, pooling, dtype), the teacher
            pass's batch size, `tcs_num_components`, `tcs_fit_on_unlabeled`, the scaling and the eLSH settings.
        train_dataset: with the coordinate column, teacher features, or neither (then the teacher runs over it).
        coordinate_system: used instead of fitting one; required when only the pool lacks coordinates.
        teacher: a loaded `Teacher` for the teacher pass (it is left loaded; one loaded here is freed after it).
        unlabeled_dataset: the pool, prepared like the training set, in the same coordinate system.
    """
    feature_column, coordinate_column = args.tcs_feature_column, args.tcs_coordinate_column
    given_columns = {
        "train": set(train_dataset.column_names),
        "pool": set() if unlabeled_dataset is None else set(unlabeled_dataset.column_names),
    }
    named = {"The training set": train_dataset, "The unlabelled pool": unlabeled_dataset}
    without = [
        name
        for name, dataset in named.items()
        if dataset is not None and not {feature_column, coordinate_column} & set(dataset.column_names)
    ]
    if without and teacher is None and args.teacher_model_name_or_path is None:
        raise ValueError(
            f"{without[0]} has neither a {coordinate_column!r} nor a {feature_column!r} column, and "
            "no teacher was given: run `hf_tcs.precompute_teacher_features(dataset, teacher)` first, or "
            "set `teacher_model_name_or_path` in TCSConfig so that the trainer runs the teacher pass."
        )
    teacher_info = teacher_identity(teacher, args)
    seconds = None
    if without:
        # One teacher for both passes, loaded here on this process's device and freed before the student trains.
        loaded_here = teacher is None
        if loaded_here:
            teacher = load_configured_teacher(args.teacher_model_name_or_path, args)
        start = time.perf_counter()
        try:
            if "The training set" in without:
                train_dataset = _teacher_pass(args, train_dataset, teacher)
            if "The unlabelled pool" in without:
                unlabeled_dataset = _teacher_pass(args, unlabeled_dataset, teacher)
        finally:
            if loaded_here:
                free_teacher(teacher)
        seconds = time.perf_counter() - start  # the one-off cost the model card reports: every pass together
    if coordinate_column not in train_dataset.column_names:
        if coordinate_system is None:
            if unlabeled_dataset is not None and coordinate_column in unlabeled_dataset.column_names:
                raise ValueError(
                    f"The unlabelled pool has a {coordinate_column!r} column, but the trainer fits the coordinate "
                    "system now, so those coordinates come from another one: remove that column from the pool "
                    "(its teacher features, or the trainer's teacher pass, then give it coordinates in the new "
                    "system), or pass the `coordinate_system` that produced them."
                )
            coordinate_system = fit_coordinate_system(_fitting_features(args, train_dataset, unlabeled_dataset), args)
        train_dataset = _add_coordinates(args, coordinate_system, train_dataset, "adding TCS coordinates")
    if unlabeled_dataset is not None and coordinate_column not in unlabeled_dataset.column_names:
        if coordinate_system is None:
            raise ValueError(
                f"The training set has a {coordinate_column!r} column but the unlabelled pool only teacher "
                "features, and no coordinate system says how to project them: pass the `coordinate_system` "
                "that produced the training set's coordinates, or add them to the pool with "
                "`coordinate_system.add_coordinates(pool)`."
            )
        unlabeled_dataset = _add_coordinates(
            args, coordinate_system, unlabeled_dataset, "adding TCS coordinates to the unlabelled pool"
        )
    k = _width(train_dataset, coordinate_column)
    if coordinate_system is not None and k != coordinate_system.num_components:
        raise ValueError(
            f"The {coordinate_column!r} column has {k} coordinates but the coordinate system "
            f"keeps {coordinate_system.num_components}: recompute the column with "
            "`coordinate_system.add_coordinates(dataset)`, or pass the coordinate system that produced it."
        )
    recorded = check_coordinate_column(train_dataset, coordinate_column, coordinate_system)
    if not teacher_info.get("teacher") and recorded.get("teacher"):
        teacher_info = teacher_provenance(recorded)
    if unlabeled_dataset is not None:
        pool_k = _width(unlabeled_dataset, coordinate_column)
        if pool_k != k:
            raise ValueError(
                f"The unlabelled pool's {coordinate_column!r} column has {pool_k} coordinates but the training "
                f"set's has {k}: compute both with the same coordinate system "
                "(`coordinate_system.add_coordinates(pool)`), or give the pool teacher features instead."
            )
        check_coordinate_column(unlabeled_dataset, coordinate_column, coordinate_system)
    if coordinate_column in given_columns["train"]:  # the caller's own column (ours come from checked features)
        check_finite_coordinates(train_dataset, coordinate_column)
    if coordinate_column in given_columns["pool"]:
        check_finite_coordinates(unlabeled_dataset, coordinate_column, "the unlabelled pool")
    values = None
    if coordinate_system is None or args.tcs_lsh_weight > 0:  # only then are the coordinates themselves needed
        values = np.asarray(train_dataset.with_format("numpy")[:][coordinate_column], dtype=np.float64)
    scale, loss_dims = target_scale(args.tcs_target_scaling, coordinate_system, k, values)
    targets = Targets(train_dataset, unlabeled_dataset, coordinate_system, k, scale, loss_dims, teacher_info, seconds)
    if args.tcs_lsh_weight > 0:
        scaled = torch.as_tensor(values * scale.numpy(), dtype=torch.float32)
        targets.lsh_projection = lsh_projection(k, args.tcs_lsh_bits or 4 * k, seed=args.seed)
        targets.lsh_bias = lsh_bias(scaled, targets.lsh_projection)
    return targets


def _teacher_pass(args: TCSConfig, dataset: datasets.Dataset, teacher: Teacher) -> datasets.Dataset:
    """The dataset with the teacher's features; each process of a multi-process run encodes its own shard."""
    return precompute_teacher_features(
        dataset,
        teacher,
        input_column=args.teacher_input_column,
        batch_size=args.teacher_batch_size,
        output_column=args.tcs_feature_column,
    )


def _fitting_features(
    args: TCSConfig, train_dataset: datasets.Dataset, unlabeled_dataset: datasets.Dataset | None
) -> datasets.Dataset:
    """The features the coordinate system is fitted on: the training set's, plus the pool's by default."""
    if unlabeled_dataset is None or not args.tcs_fit_on_unlabeled:
        return train_dataset
    columns = [args.tcs_feature_column]
    return datasets.concatenate_datasets(
        [dataset.select_columns(columns) for dataset in (train_dataset, unlabeled_dataset)]
    )


def _add_coordinates(
    args: TCSConfig, coordinate_system: CoordinateSystem, dataset: datasets.Dataset, desc: str
) -> datasets.Dataset:
    # The main process first: the others, holding the same basis, then load its cached column.
    with args.main_process_first(desc=desc):
        return coordinate_system.add_coordinates(
            dataset,
            feature_column=args.tcs_feature_column,
            output_column=args.tcs_coordinate_column,
            keep_features=False,
        )


def _width(dataset: datasets.Dataset, column: str) -> int:
    """The number of coordinates per example of a coordinate column."""
    feature = dataset.features[column]
    return feature.length if getattr(feature, "length", -1) > 0 else len(dataset[0][column])
