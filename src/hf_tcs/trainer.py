"""`TCSDistillationTrainer`: a `transformers.Trainer` that distils a teacher's coordinate system into a student.

No teacher is in memory while the student trains: the training set carries the teacher's coordinates (computed once
by `precompute_teacher_features` + `CoordinateSystem`, or by this trainer at start-up), and the loss is

    cross-entropy(labels) + tcs_loss_weight * coordinate_loss(student coordinates, teacher coordinates)

on the coordinates still active after tailoring. Unlabelled examples (label -100 or missing) carry the coordinate
loss only; an `unlabeled_dataset` (pool) adds a batch of them to every labelled batch, with its own coordinate term
(`tcs_unlabeled_loss`). `save_model` writes the folded student: the unchanged model class and config, loadable
without hf_tcs.

The Trainer contract. Public hooks carry most of it (`compute_loss`, `training_step`, `create_optimizer`, `log`,
`save_model`, `create_model_card`, `push_to_hub`); these private `Trainer` members are used too, each read in
transformers 5.24.0 (the only release CI tests, hence `transformers>=5.24` in setup.py; recheck them when raising
that bound):
- `_set_signature_columns_if_needed`: keeps the coordinate column through `remove_unused_columns=True` (as TRL does);
- `_save_checkpoint`: marks checkpoint saves, which keep the unfolded head for resuming;
- `_load_from_checkpoint`: reloads weights whose keys transformers 5 renames on save and does not map back on resume;
- `save_model(_internal_call=True)`: folds once, then saves without transformers' push from inside (it would fold
  again);
- `_save`: keeps the Hub token out of the pickled `training_args.bin`;
- `_push_from_checkpoint`: pushes the folded student, not the unfolded checkpoint; a copy of transformers' body,
  because that body copies the checkpoint's weights into the pushed folder with no hook in between;
- `_remove_unused_columns` and `_train_batch_size` (read by `training_step` for the unlabelled pool).
"""

from __future__ import annotations

import inspect
import json
import logging
import numbers
import os
import time
from collections import defaultdict
from functools import lru_cache, reduce
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)
from transformers.data.data_collator import default_data_collator
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy
from transformers.utils import SAFE_WEIGHTS_NAME, PushInProgress
from transformers.utils.hub import hf_api

from .config import TCSConfig, count_or_share
from .coordinates import CoordinateSystem, FeatureStatistics
from .evaluation import load_metric
from .features import check_launch, column_provenance, fail_together, precompute_teacher_features, shard_bounds
from .hub import HubPublishingError, published_card
from .labels import name_labels
from .losses import IGNORE_INDEX, coordinate_loss, lsh_bias, lsh_loss, lsh_projection, masked_cross_entropy
from .model_card import TCSModelCardData, save_model_card
from .selection import TailoringCallback
from .student import attach_tcs_head, check_student, folded_tcs_head, student_coordinates
from .teachers import Teacher, load_teacher

__all__ = ["TCSDataCollator", "TCSDistillationTrainer", "fit_coordinate_system", "load_configured_teacher"]

logger = logging.getLogger(__name__)

# The loss terms `compute_loss` records and `log` reports (means over every process).
_LOSS_TERMS = ("ce_loss", "tcs_loss", "lsh_loss", "tcs_unlabeled_loss", "lsh_unlabeled_loss")
# The key under which `training_step` hands the pool's micro-batch to `compute_loss`.
_UNLABELED_KEY = "tcs_unlabeled_inputs"


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
            for key in ("label", "labels"):
                if key in example and example[key] is None:
                    example[key] = IGNORE_INDEX
        batch = self.collator(features)
        if coordinates[0] is not None:
            batch[self.coordinate_column] = torch.as_tensor(np.asarray(coordinates, dtype=np.float32))
        return batch


class TCSDistillationTrainer(Trainer):
    """Train a classification student against a teacher's (tailored) coordinate system.

    Args:
        model: the student, a Hugging Face `*ForImageClassification` / `*ForSequenceClassification` model (timm
            students through `TimmWrapperForImageClassification`). Its final classifier is replaced by the TCS
            head for training and folded back on `save_model`.
        args: a `TCSConfig` (a plain `TrainingArguments` is upgraded with the TCS defaults).
        train_dataset: a `datasets.Dataset` with the student's inputs, `label` (or `labels`; -100/None for
            unlabelled examples) and either the teacher coordinates (`tcs_coordinates`), the teacher features
            (`teacher_features`), or neither when `args.teacher_model_name_or_path` or `teacher` is given.
        eval_dataset: evaluated with cross-entropy (plus the coordinate loss when it has coordinates) and
            accuracy unless `compute_metrics` says otherwise.
        coordinate_system: a fitted `CoordinateSystem` to use instead of fitting one on the training features.
        teacher: a `Teacher` (or Hub id / folder) for the teacher pass, instead of `args.teacher_model_name_or_path`.
        unlabeled_dataset: a pool of unlabelled examples (no label column, or labels -100/None) with the student's
            inputs of `train_dataset` and, like it, teacher coordinates, features, or neither (the trainer then runs
            the teacher pass on it too). Its coordinates are in the same coordinate system, fitted by default on the
            labelled and the pool's features (`args.tcs_fit_on_unlabeled`). Every micro-batch of labelled examples
            is joined by `round(args.tcs_unlabeled_ratio x per_device_train_batch_size)` pool examples, which carry
            the coordinate loss only (logged as `tcs_unlabeled_loss`); an epoch is still one of `train_dataset`,
            and the pool is cycled, reshuffled (from `data_seed` or `seed`) at each pass.
        Other arguments are those of `transformers.Trainer`.
    """

    _tag_names = ["hf_tcs", "knowledge-distillation", "tcs"]
    # The loss is a mean over each micro-batch: Trainer must divide it by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: torch.nn.Module,
        args: TrainingArguments | None = None,
        train_dataset: datasets.Dataset | None = None,
        eval_dataset: datasets.Dataset | dict[str, datasets.Dataset] | None = None,
        processing_class: Any = None,
        data_collator: Any = None,
        compute_metrics: Any = None,
        coordinate_system: CoordinateSystem | None = None,
        teacher: Teacher | str | None = None,
        callbacks: list | None = None,
        unlabeled_dataset: datasets.Dataset | None = None,
        **kwargs,
    ):
        if args is None:
            args = TCSConfig(output_dir=f"{type(model).__name__}-TCS")
        elif not isinstance(args, TCSConfig):
            config = args.to_dict()
            config["hub_token"] = args.hub_token  # to_dict() hides the token
            args = TCSConfig(**config)
        check_launch(args)
        if not isinstance(train_dataset, datasets.Dataset):
            raise ValueError(
                "TCSDistillationTrainer needs a `train_dataset` (a datasets.Dataset with the student's inputs and "
                f"labels), got {type(train_dataset).__name__}."
            )
        num_labels = check_student(model)
        _check_training_labels(train_dataset, num_labels)
        eval_sets = eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval_dataset", eval_dataset)]
        for name, dataset in eval_sets:
            if dataset is not None:
                _check_labels(dataset, num_labels, name)
        name_labels(model, train_dataset)  # a student without class names takes the training set's

        self.coordinate_system = None
        self.tcs_head = None
        # For the model card: who taught the student (when the coordinate system does not say) and what it cost.
        self.teacher_info = _teacher_info(teacher, args)
        self.teacher_pass_seconds: float | None = None
        self._card_fields: dict[str, Any] = {}
        if unlabeled_dataset is not None:
            unlabeled_dataset = _check_unlabeled(unlabeled_dataset, train_dataset, model, args)
        if args.tcs_loss_weight > 0 or args.tcs_lsh_weight > 0:
            train_dataset, unlabeled_dataset = self._prepare_coordinates(
                args, train_dataset, coordinate_system, teacher, unlabeled_dataset
            )
            self.tcs_head = attach_tcs_head(model, self._num_coordinates)

        if data_collator is None:
            is_tokenizer = isinstance(processing_class, PreTrainedTokenizerBase)
            data_collator = DataCollatorWithPadding(processing_class) if is_tokenizer else default_data_collator
        super().__init__(
            model=model,
            args=args,
            data_collator=TCSDataCollator(data_collator, args.tcs_coordinate_column, args.tcs_feature_column),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics or _accuracy,
            callbacks=callbacks,
            **kwargs,
        )
        if self.tcs_head is not None and args.tcs_selection_strategy != "no" and args.tcs_selection_rounds > 0:
            self.add_callback(
                TailoringCallback(
                    self.tcs_head,
                    strategy=args.tcs_selection_strategy,
                    steps=args.tcs_selection_steps,
                    rounds=args.tcs_selection_rounds,
                    drop_ratio=args.tcs_drop_ratio,
                    min_components=args.tcs_min_components,
                )
            )
        elif self.tcs_head is not None:
            # Without tailoring nothing reads the gate's gradient: do not compute it.
            self.tcs_head.tcs_gate.requires_grad_(False)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._saving_checkpoint = False
        self.unlabeled_dataset = unlabeled_dataset
        self._pool_view: tuple[datasets.Dataset, datasets.Dataset] | None = None  # (pool, its columns the model takes)
        self._unlabeled_position = (-1, 0)  # (optimizer step, micro-batch within it) of the last pool draw
        self._pool_order: tuple[int, np.ndarray] | None = None  # (pass over the pool, its permutation)
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    # ---- Coordinates -------------------------------------------------------------------------------------------

    def _prepare_coordinates(
        self,
        args: TCSConfig,
        train_dataset: datasets.Dataset,
        coordinate_system: CoordinateSystem | None,
        teacher: Teacher | str | None,
        unlabeled_dataset: datasets.Dataset | None = None,
    ) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        """Make sure the training set (and the pool) have teacher coordinates; set the coordinate system and the
        target scale."""
        feature_column, coordinate_column = args.tcs_feature_column, args.tcs_coordinate_column
        columns = train_dataset.column_names
        pool_columns = [] if unlabeled_dataset is None else unlabeled_dataset.column_names
        named = {"The training set": train_dataset, "The unlabelled pool": unlabeled_dataset}
        without = [
            name
            for name, dataset in named.items()
            if dataset is not None and not {feature_column, coordinate_column} & set(dataset.column_names)
        ]
        teacher = teacher or args.teacher_model_name_or_path
        if without and teacher is None:
            raise ValueError(
                f"{without[0]} has neither a {coordinate_column!r} nor a {feature_column!r} column, and "
                "no teacher was given: run `hf_tcs.precompute_teacher_features(dataset, teacher)` first, or "
                "set `teacher_model_name_or_path` in TCSConfig so that the trainer runs the teacher pass."
            )
        provenance = None
        if without:
            # One teacher for both passes, loaded here on this process's device and freed before the student trains.
            loaded_here = not isinstance(teacher, Teacher)
            if loaded_here:
                teacher = load_configured_teacher(teacher, args)
            try:
                if "The training set" in without:
                    train_dataset, provenance = self._teacher_pass(args, train_dataset, teacher)
                if "The unlabelled pool" in without:
                    unlabeled_dataset, provenance = self._teacher_pass(args, unlabeled_dataset, teacher)
            finally:
                if loaded_here:
                    _free_teacher(teacher)
        if coordinate_column not in columns:
            if coordinate_system is None:
                if unlabeled_dataset is not None and coordinate_column in unlabeled_dataset.column_names:
                    raise ValueError(
                        f"The unlabelled pool has a {coordinate_column!r} column, but the trainer fits the coordinate "
                        "system now, so those coordinates come from another one: remove that column from the pool "
                        "(its teacher features, or the trainer's teacher pass, then give it coordinates in the new "
                        "system), or pass the `coordinate_system` that produced them."
                    )
                coordinate_system = fit_coordinate_system(
                    self._fitting_features(args, train_dataset, unlabeled_dataset), args, provenance
                )
            # Rank 0 first: the other ranks, holding the same basis, then load its cached column.
            with args.main_process_first(desc="adding TCS coordinates"):
                train_dataset = coordinate_system.add_coordinates(
                    train_dataset, feature_column=feature_column, output_column=coordinate_column, keep_features=False
                )
        if unlabeled_dataset is not None and coordinate_column not in unlabeled_dataset.column_names:
            if coordinate_system is None:
                raise ValueError(
                    f"The training set has a {coordinate_column!r} column but the unlabelled pool only teacher "
                    "features, and no coordinate system says how to project them: pass the `coordinate_system` "
                    "that produced the training set's coordinates, or add them to the pool with "
                    "`coordinate_system.add_coordinates(pool)`."
                )
            with args.main_process_first(desc="adding TCS coordinates to the unlabelled pool"):
                unlabeled_dataset = coordinate_system.add_coordinates(
                    unlabeled_dataset,
                    feature_column=feature_column,
                    output_column=coordinate_column,
                    keep_features=False,
                )
        self.coordinate_system = coordinate_system
        column = train_dataset.features[coordinate_column]
        k = column.length if getattr(column, "length", -1) > 0 else len(train_dataset[0][coordinate_column])
        if coordinate_system is not None and k != coordinate_system.num_components:
            raise ValueError(
                f"The {coordinate_column!r} column has {k} coordinates but the coordinate system "
                f"keeps {coordinate_system.num_components}: recompute the column with "
                "`coordinate_system.add_coordinates(dataset)`, or pass the coordinate system that produced it."
            )
        recorded = _check_coordinate_column(train_dataset, coordinate_column, coordinate_system)
        if not self.teacher_info.get("teacher") and recorded.get("teacher"):
            self.teacher_info = {key: value for key, value in recorded.items() if key != "coordinate_system"}
        pool_k = None if unlabeled_dataset is None else len(unlabeled_dataset[0][coordinate_column])
        if pool_k is not None and pool_k != k:
            raise ValueError(
                f"The unlabelled pool's {coordinate_column!r} column has {pool_k} coordinates but the training "
                f"set's has {k}: compute both with the same coordinate system "
                "(`coordinate_system.add_coordinates(pool)`), or give the pool teacher features instead."
            )
        if unlabeled_dataset is not None:
            _check_coordinate_column(unlabeled_dataset, coordinate_column, coordinate_system)
        self._num_coordinates = k
        if coordinate_column in columns:  # the user's own column (ours come from checked features)
            _check_finite_coordinates(train_dataset, coordinate_column)
        if unlabeled_dataset is not None and coordinate_column in pool_columns:
            _check_finite_coordinates(unlabeled_dataset, coordinate_column, "the unlabelled pool")
        targets = None
        if coordinate_system is None or args.tcs_lsh_weight > 0:  # only then are the coordinates themselves needed
            targets = np.asarray(train_dataset.with_format("numpy")[:][coordinate_column], dtype=np.float64)
        self._target_scale, self._feature_dim = _target_scale(args.tcs_target_scaling, coordinate_system, k, targets)
        if args.tcs_lsh_weight > 0:
            bits = args.tcs_lsh_bits or 4 * self._num_coordinates
            scaled = torch.as_tensor(targets * self._target_scale.numpy(), dtype=torch.float32)
            self._lsh_projection = lsh_projection(self._num_coordinates, bits, seed=args.seed)
            self._lsh_bias = lsh_bias(scaled, self._lsh_projection)
        return train_dataset, unlabeled_dataset

    def _teacher_pass(
        self, args: TCSConfig, train_dataset: datasets.Dataset, teacher: Teacher
    ) -> tuple[datasets.Dataset, dict]:
        """Run the teacher once over a dataset (the training set or the pool); each rank of a multi-process run on
        its own shard.

        Returns the dataset with the feature column and the teacher's identity (provenance of the coordinates).
        """
        start = time.perf_counter()
        dataset = precompute_teacher_features(
            train_dataset,
            teacher,
            input_column=args.teacher_input_column,
            batch_size=args.teacher_batch_size,
            output_column=args.tcs_feature_column,
        )
        # The one-off cost the model card reports: every pass of this trainer (training set and pool) together.
        self.teacher_pass_seconds = (self.teacher_pass_seconds or 0.0) + time.perf_counter() - start
        return dataset, teacher.to_dict()

    @staticmethod
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

    # ---- Data --------------------------------------------------------------------------------------------------

    def _set_signature_columns_if_needed(self):
        # Keep the coordinate column through `remove_unused_columns=True` (it is no argument of model.forward).
        super()._set_signature_columns_if_needed()
        if self.args.tcs_coordinate_column not in self._signature_columns:
            self._signature_columns.append(self.args.tcs_coordinate_column)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Add the pool's micro-batch to the labelled one (`_prepare_inputs` moves it to the device too).

        Hooked here, not in `get_train_dataloader`, so that the labelled dataloader stays transformers' own: its
        sampler, `accelerate`'s sharding (`BatchSamplerShard`: rank r of W takes labelled batches r, r + W, ...),
        the epoch length and the batches skipped on resume are untouched (read in transformers 5.24 /
        accelerate 1.15). The pool is drawn by position instead (`_unlabeled_batch`), in the same rank-interleaved
        order. Relies on Trainer's `_train_batch_size` and `_remove_unused_columns`.
        """
        if self.unlabeled_dataset is not None and self.tcs_head is not None:
            inputs = {**inputs, _UNLABELED_KEY: self._unlabeled_batch()}
        return super().training_step(model, inputs, num_items_in_batch)

    def _unlabeled_batch(self) -> dict[str, Any]:
        """The collated pool examples of this micro-batch.

        The pool is read as one endless stream: a permutation of it per pass, drawn from (`data_seed` or `seed`,
        pass number). Micro-batch `i` of optimizer step `t` on process `r` of `W` takes the `u` examples at stream
        position `((t * gradient_accumulation_steps + i) * W + r) * u`, `u` being `tcs_unlabeled_ratio` x the
        labelled micro-batch size. The position depends on the trainer state only, so a run resumed from a
        checkpoint draws what the uninterrupted run draws, and 1 x B, 2 x B/2 (accumulation) and 2 processes x B/2
        take the same examples at every optimizer step.
        """
        args = self.args
        step, micro = self._unlabeled_position
        micro = micro + 1 if step == self.state.global_step else 0
        self._unlabeled_position = (self.state.global_step, micro)
        size = max(1, round(args.tcs_unlabeled_ratio * self._train_batch_size))
        chunk = (self.state.global_step * args.gradient_accumulation_steps + micro) * args.world_size
        chunk += args.process_index
        passes, offsets = np.divmod(np.arange(chunk * size, (chunk + 1) * size), len(self.unlabeled_dataset))
        indices = [int(self._pool_permutation(int(p))[offset]) for p, offset in zip(passes, offsets, strict=True)]
        if self._pool_view is None or self._pool_view[0] is not self.unlabeled_dataset:
            # Without the columns the student's forward does not take, as Trainer does for train_dataset; here, not
            # at init, so that the pool can still get its student view (tokenizer, transform) as train_dataset can.
            self._pool_view = (
                self.unlabeled_dataset,
                self._remove_unused_columns(self.unlabeled_dataset, "unlabeled"),
            )
        columns = self._pool_view[1][indices]
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return self.data_collator(rows)

    def _pool_permutation(self, pass_index: int) -> np.ndarray:
        """The order of the pool in its `pass_index`-th pass (the last one is kept: passes are consecutive)."""
        if self._pool_order is None or self._pool_order[0] != pass_index:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            order = np.random.default_rng([seed, pass_index]).permutation(len(self.unlabeled_dataset))
            self._pool_order = (pass_index, order)
        return self._pool_order[1]

    def create_optimizer(self, model=None):
        # The gate only measures importance for tailoring: it must stay at 1, so the optimizer never sees it.
        gate = self.tcs_head.tcs_gate if self.tcs_head is not None else None
        if gate is None or not gate.requires_grad:
            return super().create_optimizer(model)
        gate.requires_grad_(False)
        try:
            return super().create_optimizer(model)
        finally:
            gate.requires_grad_(True)

    # ---- Loss --------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        unlabeled = inputs.pop(_UNLABELED_KEY, None)
        targets = inputs.pop(self.args.tcs_coordinate_column, None)
        labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        logits = outputs.logits
        mode = "train" if model.training else "eval"
        if labels is None:
            loss = logits.sum() * 0.0
        else:
            loss = masked_cross_entropy(logits, labels)
            if (labels != IGNORE_INDEX).any():  # an all-unlabelled batch has no cross-entropy to report
                self._metrics[mode]["ce_loss"].append(loss.detach())
        if self.tcs_head is not None and targets is not None:
            coordinates_loss, hash_loss = self._coordinate_losses(model, targets)
            self._metrics[mode]["tcs_loss"].append(coordinates_loss.detach())
            loss = loss + self.args.tcs_loss_weight * coordinates_loss
            if hash_loss is not None:
                self._metrics[mode]["lsh_loss"].append(hash_loss.detach())
                loss = loss + self.args.tcs_lsh_weight * hash_loss
        if unlabeled is not None:
            loss = loss + self._unlabeled_loss(model, unlabeled)
        return (loss, outputs) if return_outputs else loss

    def _unlabeled_loss(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        """The weighted coordinate terms of the pool's micro-batch: a forward pass of its own, after the labelled
        batch's terms have been read (the head keeps the coordinates of its last forward pass only)."""
        inputs = dict(inputs)
        targets = inputs.pop(self.args.tcs_coordinate_column)
        model(**inputs)
        coordinates_loss, hash_loss = self._coordinate_losses(model, targets)
        self._metrics["train"]["tcs_unlabeled_loss"].append(coordinates_loss.detach())
        loss = self.args.tcs_loss_weight * coordinates_loss
        if hash_loss is not None:
            self._metrics["train"]["lsh_unlabeled_loss"].append(hash_loss.detach())
            loss = loss + self.args.tcs_lsh_weight * hash_loss
        return loss

    def _coordinate_losses(self, model, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        student = student_coordinates(model)
        if targets.shape[-1] != student.shape[-1]:
            raise ValueError(
                f"The batch has {targets.shape[-1]} teacher coordinates per example but the student head has "
                f"{student.shape[-1]}: the coordinate column must come from the coordinate system this trainer uses."
            )
        targets = targets.to(student.device, student.dtype) * self._target_scale.to(student.device, student.dtype)
        head = self.tcs_head
        active = head.active_mask
        if self.args.tcs_importance_loss == "total":
            # The mask multiplies the coordinate error too, so that tailoring measures the total loss (as the paper
            # reads): the gate's gradient then also carries 2 * (z_s - z_t)^2 per coordinate.
            error = (student - targets) * head.mask_gate()
            coordinates_loss = coordinate_loss(error, torch.zeros_like(error), active, num_dims=self._feature_dim)
        else:
            coordinates_loss = coordinate_loss(student, targets, active, num_dims=self._feature_dim)
        hash_loss = None
        if self.args.tcs_lsh_weight > 0:
            projection = self._lsh_projection.to(student.device, student.dtype)
            bias = self._lsh_bias.to(student.device, student.dtype)
            hash_loss = lsh_loss(student, targets, projection, bias, active)
        return coordinates_loss, hash_loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self._gathered_losses(mode)
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        elif self.tcs_head is not None:
            metrics["tcs_active_coordinates"] = self.tcs_head.num_active
        super().log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()

    def _gathered_losses(self, mode: str) -> dict[str, float]:
        """Mean of each loss term over the batches of every process since the last log.

        Runs on every rank (as `log` does): the sums and counts of a fixed list of terms are reduced in one call, so
        a process that saw no labelled batch (no `ce_loss`) still takes part.
        """
        values = self._metrics[mode]
        totals = torch.tensor(
            [[float(sum(v.item() for v in values.get(name, []))), len(values.get(name, []))] for name in _LOSS_TERMS],
            dtype=torch.float32,
            device=self.accelerator.device,
        )
        if self.args.world_size > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        return {
            name: total / count for name, (total, count) in zip(_LOSS_TERMS, totals.tolist(), strict=True) if count
        }

    # ---- Saving ------------------------------------------------------------------------------------------------

    def _save_checkpoint(self, model, trial):
        # Checkpoints keep the unfolded head (and its mask) so that training can resume from them.
        self._saving_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._saving_checkpoint = False

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = model or self.model
        if not isinstance(model, PreTrainedModel) or not os.path.isfile(
            os.path.join(resume_from_checkpoint, SAFE_WEIGHTS_NAME)
        ):
            return
        # transformers 5 renames some architectures' keys when saving (ViT, for one) and Trainer's resume path loads
        # the file without mapping them back, which silently leaves those weights at their initial values. Loading
        # the checkpoint with from_pretrained maps them; the TCS head's own keys were loaded above.
        reference = type(model).from_pretrained(resume_from_checkpoint, config=model.config)
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in reference.state_dict().items() if k in own}, strict=False)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Save the folded student (plain model class and config), its processor, the coordinate system (`tcs/`) and
        the model card with its plots."""
        if not self._saving_checkpoint:
            _check_finite_weights(self.model)
        if self.tcs_head is None or self._saving_checkpoint:
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        with folded_tcs_head(self.model) as model:
            # As an internal call: transformers would push from inside, and the push saves (and folds) again.
            super().save_model(output_dir, _internal_call=True)
            if self.args.should_save and getattr(model.config, "model_type", None) == "timm_wrapper":
                _save_in_timm_format(model, output_dir)
        if self.args.should_save and self.coordinate_system is not None:
            self.coordinate_system.save_pretrained(os.path.join(output_dir, "tcs"))
        if self.is_world_process_zero():
            self._write_model_card(output_dir)
        if self.args.push_to_hub and not _internal_call:  # what transformers does for a user's call
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _save(self, output_dir: str | None = None, state_dict=None):
        # training_args.bin is a pickle of the arguments: it must never carry the Hub token.
        token, self.args.hub_token = self.args.hub_token, None
        try:
            super()._save(output_dir, state_dict)
        finally:
            self.args.hub_token = token

    # ---- Model card and Hub ------------------------------------------------------------------------------------

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
        **kwargs,
    ) -> None:
        """Write the hf_tcs model card (`README.md`) and its plots into `args.output_dir`.

        Replaces transformers' card (which would claim `library_name: transformers` for timm students and make the
        student a fine-tune of nothing useful). Takes transformers' arguments plus the fields of `TCSModelCardData`
        (e.g. `baseline_metrics={"accuracy": 0.84}`), which are remembered for later saves. An existing card (the
        one on the Hub when the repo exists, else the local one) keeps everything outside hf_tcs' section.
        """
        fields = {
            "language": language,
            "license": license,
            "tags": tags,
            "model_name": model_name,
            "finetuned_from": finetuned_from,
            "tasks": tasks,
            "dataset_tags": dataset_tags,
            "dataset": dataset,
            "dataset_args": dataset_args,
            **kwargs,
        }
        self._card_fields.update({key: value for key, value in fields.items() if value is not None})
        TCSModelCardData.from_fields(**self._card_fields)  # unknown fields are a caller's mistake: raise now
        if self.is_world_process_zero():
            self._write_model_card(self.args.output_dir)

    def _write_model_card(self, output_dir: str) -> None:
        """Render the card into `output_dir`; a failure is logged, never raised (a card must not stop training)."""
        try:
            existing = None
            if self.hub_model_id is not None:  # published card first, so edits made on the Hub survive the push
                existing = published_card(
                    self.hub_model_id, revision=self.args.hub_revision, token=self.args.hub_token
                )
            save_model_card(TCSModelCardData.from_trainer(self, **self._card_fields), output_dir, existing)
        except Exception as error:
            logger.warning(f"hf_tcs could not write the model card in {output_dir}: {type(error).__name__}: {error}")

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Upload the folded student, its processor, card, plots and coordinate system (`tcs/`) to the Hub.

        `kwargs` go to `create_model_card` (transformers' card arguments and `TCSModelCardData` fields). A failed
        push raises `HubPublishingError`; the local output folder stays as `save_model` wrote it.
        """
        repo_id = self.args.hub_model_id or os.path.basename(os.path.abspath(self.args.output_dir))
        try:
            return super().push_to_hub(
                commit_message=commit_message,
                blocking=blocking,
                token=token,
                revision=revision,
                private=private,
                **kwargs,
            )
        except (HubPublishingError, TypeError):
            raise
        except Exception as error:
            raise HubPublishingError(
                f"Pushing {self.args.output_dir} to the Hub repo {repo_id!r} failed: {type(error).__name__}: {error}. "
                f"The local output in {self.args.output_dir} is intact; check `hub_model_id`, your token's write "
                "access and the network (HF_HUB_OFFLINE must be unset), then call `trainer.push_to_hub()` again or "
                f"run `hf-tcs push {self.args.output_dir} --hub_model_id {repo_id}`."
            ) from error

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """`hub_strategy="every_save"` and friends: publish what `save_model` writes, never the unfolded checkpoint.

        transformers copies the checkpoint's weights into `output_dir` and pushes that folder; our checkpoints keep
        the unfolded TCS head (to resume), so the folded student is saved there instead. The checkpoint itself is
        still pushed as is for `hub_strategy="checkpoint"` / `"all_checkpoints"` (it is what resuming needs).
        """
        if self.tcs_head is None:
            return super()._push_from_checkpoint(checkpoint_folder)
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        output_dir = self.args.output_dir
        with folded_tcs_head(self.model):
            self._save(output_dir)
        if self.coordinate_system is not None:
            self.coordinate_system.save_pretrained(os.path.join(output_dir, "tcs"))
        self._write_model_card(output_dir)
        commit_message = f"Training in progress, step {self.state.global_step}"
        jobs = [
            hf_api().upload_folder(
                repo_id=self.hub_model_id,
                folder_path=output_dir,
                commit_message=commit_message,
                token=self.args.hub_token,
                run_as_future=True,
                ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*"],
                revision=self.args.hub_revision,
            )
        ]
        if self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            last = self.args.hub_strategy == HubStrategy.CHECKPOINT
            name = "last-checkpoint" if last else Path(checkpoint_folder).name
            jobs.append(
                hf_api().upload_folder(
                    repo_id=self.hub_model_id,
                    folder_path=checkpoint_folder,
                    path_in_repo=name,
                    commit_message=f"{commit_message}, checkpoint",
                    token=self.args.hub_token,
                    run_as_future=True,
                    revision=self.args.hub_revision,
                )
            )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)


def load_configured_teacher(name_or_path: str, args: TCSConfig) -> Teacher:
    """Load a teacher with the config's revision, pooling and dtype, on this process's device.

    Rank 0 first, so that a Hub download happens once and the other ranks read the local cache; a failure on any rank
    stops every rank.
    """
    state = args.distributed_state
    with fail_together(state, "Loading the teacher"), args.main_process_first(desc="loading the teacher"):
        return load_teacher(
            name_or_path,
            revision=args.teacher_revision,
            pooling=args.teacher_pooling,
            device=args.device,
            dtype=args.teacher_dtype,
            hub_id=args.teacher_hub_id,
        )


def fit_coordinate_system(
    train_dataset: datasets.Dataset, args: TCSConfig, provenance: dict | None = None
) -> CoordinateSystem:
    """Fit the coordinate system on the training features, keeping `args.tcs_num_components` (a share of variance or a
    count); each rank of a multi-process run reads only its shard.

    The ranks' statistics are merged exactly (`FeatureStatistics.merge`), so the basis is the single-process one;
    rank 0 decomposes them and sends its result to the others, so every rank holds bitwise the same basis (and
    the coordinate column gets the same cache fingerprint on every rank).
    """
    num_components = count_or_share(args.tcs_num_components)  # the field may have been set after construction
    feature_column, state = args.tcs_feature_column, args.distributed_state
    if state is None or state.num_processes == 1:
        coordinate_system = CoordinateSystem.fit(
            train_dataset, num_components=num_components, feature_column=feature_column, metadata=provenance
        )
    else:
        with fail_together(state, "Fitting the coordinate system"):
            features = train_dataset.select_columns([feature_column]).with_format("numpy")
            statistics = FeatureStatistics(len(features[0][feature_column]))
            start, end = shard_bounds(len(features), state.num_processes, state.process_index)
            for batch in features.select(range(start, end)).iter(batch_size=4096):
                statistics.update(batch[feature_column])
        statistics = reduce(FeatureStatistics.merge, gather_object([statistics]))
        coordinate_system = None
        with fail_together(state, "Fitting the coordinate system"):
            if state.is_main_process:
                # The provenance `CoordinateSystem.fit` records for a dataset.
                metadata = {
                    **column_provenance(train_dataset, feature_column),
                    "dataset_fingerprint": train_dataset._fingerprint,
                    "feature_column": feature_column,
                }
                coordinate_system = CoordinateSystem.from_statistics(
                    statistics, num_components=num_components, metadata={**metadata, **(provenance or {})}
                )
        coordinate_system = broadcast_object_list([coordinate_system])[0]
    logger.info("Coordinate system: %r", coordinate_system)
    return coordinate_system


def _target_scale(
    scaling: str, coordinate_system: CoordinateSystem | None, k: int, targets: np.ndarray | None
) -> tuple[torch.Tensor, int]:
    """Per-coordinate scale of the k targets, and the dimension D the coordinate loss is normalised by.

    With a coordinate system the scale uses its full spectrum (all D eigenvalues); with only a coordinate column
    (`targets`, N x k) it falls back to the column's own variances, and D to the column width.
    """
    if coordinate_system is not None:
        variances = np.asarray(coordinate_system.eigenvalues[:k], dtype=np.float64)
        global_scale = coordinate_system.global_scale
        feature_dim = coordinate_system.feature_dim
    else:
        variances = targets.var(axis=0, ddof=1) if len(targets) > 1 else np.full(k, np.nan)
        if not variances.mean() > 0:  # NaN for one row, 0 for the same coordinates in every row
            raise ValueError(
                f"The teacher coordinates of the training set ({len(targets)} rows) have zero or undefined variance, "
                "so the target scale would be inf/NaN: a coordinate column needs at least 2 rows that differ. Compute "
                "it over the whole training set, pass the `coordinate_system` that made it, or set "
                "tcs_target_scaling='none'."
            )
        global_scale = 1.0 / np.sqrt(variances.mean())
        feature_dim = k
    if scaling == "none":
        scale = np.ones(k)
    elif scaling == "global":
        scale = np.full(k, global_scale)
    else:
        if (variances <= 0).any():
            raise ValueError(
                "tcs_target_scaling='standardize' divides each coordinate by its standard deviation, and some "
                "coordinates have zero variance: keep fewer components (tcs_num_components) or use 'global'."
            )
        scale = 1.0 / np.sqrt(variances)
    return torch.as_tensor(scale, dtype=torch.float32), feature_dim


def _check_coordinate_column(
    dataset: datasets.Dataset, column: str, coordinate_system: CoordinateSystem | None
) -> dict[str, Any]:
    """The provenance recorded in the coordinate column; raise when another coordinate system made the column than
    the one the trainer uses (the student would learn one system's targets and `tcs/` would hold the other)."""
    recorded = column_provenance(dataset, column)
    made_by = recorded.get("coordinate_system")
    if coordinate_system is not None and made_by is not None and made_by != coordinate_system.fingerprint:
        raise ValueError(
            f"The {column!r} column was made by another coordinate system (fingerprint {made_by[:12]}...) than the "
            f"one given to the trainer ({coordinate_system.fingerprint[:12]}...; teacher "
            f"{coordinate_system.metadata.get('teacher')!r}): pass the coordinate system that made the column, or "
            f"recompute the column with `coordinate_system.add_coordinates(dataset)` after "
            f"`dataset.remove_columns({column!r})`."
        )
    return recorded


def _check_training_labels(dataset: datasets.Dataset, num_labels: int) -> None:
    """The training set must be a labelled one whose labels fit the student; say when the student has more labels
    than the data has classes (the extra logits are only ever pushed down)."""
    values = _check_labels(dataset, num_labels, "train_dataset")
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
    column = next(c for c in ("label", "labels") if c in dataset.column_names)
    feature = dataset.features[column]
    num_classes = feature.num_classes if isinstance(feature, datasets.ClassLabel) else max(values) + 1
    if num_labels > num_classes:
        logger.warning(
            f"The student has {num_labels} labels but the training data has {num_classes} classes (labels "
            f"0..{num_classes - 1}): the extra {num_labels - num_classes} outputs are trained to never win. Load the "
            f"student with `num_labels={num_classes}` unless the other classes are meant to come later."
        )


def _check_finite_coordinates(dataset: datasets.Dataset, column: str, name: str = "the training set") -> None:
    """A NaN/inf teacher coordinate trains a NaN student while the logged loss looks fine: name the rows instead."""
    bad, start = [], 0
    for batch in dataset.select_columns([column]).with_format("numpy").iter(batch_size=4096):
        values = np.asarray(batch[column], dtype=np.float64)
        bad.extend((start + np.flatnonzero(~np.isfinite(values).all(axis=1))).tolist())
        start += len(values)
    if bad:
        raise ValueError(
            f"{len(bad)} rows of {name}'s {column!r} column hold NaN or inf (rows {bad[:5]}"
            f"{'...' if len(bad) > 5 else ''}): recompute the coordinates from finite teacher features "
            "(`coordinate_system.add_coordinates(dataset)`) or drop those rows."
        )


def _check_finite_weights(model: torch.nn.Module) -> None:
    """Refuse to save a student whose training diverged: its NaN/inf weights would give NaN logits to every user."""
    bad = [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if bad:
        raise ValueError(
            f"The student's weights hold NaN or inf ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}), so it is "
            "not saved: training diverged. Check the logged losses, lower the learning rate (or use gradient "
            "clipping, `max_grad_norm`), and check the teacher coordinates."
        )


def _free_teacher(teacher: Teacher) -> None:
    """Nothing needs the teacher any more: free its memory before the student trains."""
    device = teacher.device
    teacher.model.to("meta")
    if device.type == "cuda":
        # PyTorch's caching allocator would keep the freed weights reserved, out of other processes' reach.
        torch.cuda.empty_cache()


def _check_unlabeled(
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
    for column in ("label", "labels"):
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
    ignored = {"label", "labels", args.tcs_feature_column, args.tcs_coordinate_column}
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


def _check_labels(dataset: datasets.Dataset, num_labels: int, name: str) -> list[int] | None:
    """Labels must be whole numbers in the student's label set; -100 and None mark unlabelled examples.

    Returns the distinct labels of the labelled examples, or None when the dataset has no label column.
    """
    column = next((c for c in ("label", "labels") if c in dataset.column_names), None)
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


@lru_cache(maxsize=1)
def _accuracy_metric():
    return load_metric("accuracy")


def _accuracy(eval_prediction) -> dict[str, float]:
    """Accuracy over the labelled examples, with `evaluate` (the Hub's module, or the one shipped with hf_tcs)."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    labels = eval_prediction.label_ids
    labelled = labels != IGNORE_INDEX
    return _accuracy_metric().compute(predictions=logits.argmax(-1)[labelled], references=labels[labelled])


def _save_in_timm_format(model: PreTrainedModel, output_dir: str) -> None:
    """Rewrite a timm student's files in timm's own format, which both `timm.create_model("hf-hub:...")` and
    `AutoModelForImageClassification` load (transformers' `TimmWrapper` format is not loadable by timm)."""
    from timm.models import save_for_hf

    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    save_for_hf(model.timm_model, output_dir, model_config={"label_names": label_names}, safe_serialization=True)
    config_file = os.path.join(output_dir, "config.json")
    with open(config_file, encoding="utf-8") as file:
        config = json.load(file)
    # transformers passes num_classes itself and fails on a second one among the model arguments.
    (config.get("model_args") or {}).pop("num_classes", None)
    with open(config_file, "w", encoding="utf-8") as file:
        json.dump(config, file, indent=2)


def _teacher_info(teacher: Teacher | str | None, args: TCSConfig) -> dict[str, Any]:
    """Who the teacher is, as far as the arguments say (the coordinate system's provenance is preferred)."""
    if isinstance(teacher, Teacher):
        return teacher.to_dict()
    name = teacher or args.teacher_model_name_or_path
    if name and args.teacher_hub_id and name == args.teacher_model_name_or_path:
        name = args.teacher_hub_id
    return {"teacher": str(name), "teacher_revision": args.teacher_revision} if name else {}
