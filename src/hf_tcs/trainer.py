"""`TCSDistillationTrainer`: a `transformers.Trainer` that distils a teacher's coordinate system into a student.

No teacher is in memory while the student trains: the training set carries the teacher's coordinates (computed once
by `precompute_teacher_features` + `CoordinateSystem`, or at start-up by `hf_tcs.targets.prepare_targets`), and the
loss is

    cross-entropy(labels) + tcs_loss_weight * coordinate_loss(student coordinates, teacher coordinates)

on the coordinates still active after tailoring. Unlabelled examples (label -100 or missing) carry the coordinate
loss only; an `unlabeled_dataset` (pool) adds a batch of them to every labelled batch, with its own coordinate term
(`tcs_unlabeled_loss`). `save_model` writes the folded student: the unchanged model class and config, loadable
without hf_tcs.

The Trainer contract. Public hooks carry most of it (`train`, `compute_loss`, `training_step`, `create_optimizer`,
`evaluate`, `log`, `save_model`, `create_model_card`, `push_to_hub`); these private `Trainer` members are used too,
each read in transformers 5.24.0 (the oldest release setup.py allows and the one CI tests; recheck them, and the
comment at each override, whenever CI moves to a newer release):
- `_set_signature_columns_if_needed`: keeps the coordinate column through `remove_unused_columns=True` (as TRL does);
- `_save_checkpoint`: marks checkpoint saves, which keep the unfolded head for resuming;
- `_load_from_checkpoint`: reloads weights whose keys transformers 5 renames on save and does not map back on resume;
- `save_model(_internal_call=True)`: folds once, then saves without transformers' push from inside (it would fold
  again);
- `_save`: keeps the Hub token out of the pickled `training_args.bin`;
- `_push_from_checkpoint`: pushes the folded student, not the unfolded checkpoint; a copy of transformers' body,
  because that body copies the checkpoint's weights into the pushed folder with no hook in between;
- `_remove_unused_columns` and `_train_batch_size` (read by `training_step` for the unlabelled pool; the first also
  by `train` for the least-squares projector's rows), `_prepare_inputs` (moves those rows to the device).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
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

from .columns import IGNORE_INDEX
from .config import TCSConfig
from .coordinates import COORDINATE_SYSTEM_FOLDER, CoordinateSystem
from .data import TCSDataCollator
from .distributed import check_launch
from .evaluation import accuracy
from .hub import HubPublishingError
from .labels import check_labels, check_training_labels, check_unlabeled_pool, name_labels
from .losses import coordinate_loss, lsh_loss, masked_cross_entropy
from .model_card import TAGS, ModelCardWriter
from .models import save_in_timm_format
from .selection import TailoringCallback
from .student import (
    PROJECTOR_MIN_R2,
    attach_tcs_head,
    check_finite_weights,
    check_student,
    fit_projector,
    folded_tcs_head,
    student_coordinates,
)
from .targets import Targets, prepare_targets
from .teachers import Teacher, teacher_identity

__all__ = ["TCSDistillationTrainer"]

# The loss terms `compute_loss` records and `log` reports (means over every process).
_LOSS_TERMS = ("ce_loss", "tcs_loss", "lsh_loss", "tcs_unlabeled_loss", "lsh_unlabeled_loss")
# The key under which `training_step` hands the pool's micro-batch to `compute_loss`.
_UNLABELED_KEY = "tcs_unlabeled_inputs"
# How many examples `tcs_projector_init="least_squares"` fits the projector on (training set first, then pool).
_PROJECTOR_FIT_EXAMPLES = 4096

logger = logging.getLogger(__name__)


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
        teacher: a loaded `Teacher` for the teacher pass, instead of loading `args.teacher_model_name_or_path`.
        unlabeled_dataset: a pool of unlabelled examples (no label column, or labels -100/None) with the student's
            inputs of `train_dataset` and, like it, teacher coordinates, features, or neither (the trainer then runs
            the teacher pass on it too). Its coordinates are in the same coordinate system, fitted by default on the
            labelled and the pool's features (`args.tcs_fit_on_unlabeled`). Every micro-batch of labelled examples
            is joined by `round(args.tcs_unlabeled_ratio x per_device_train_batch_size)` pool examples, which carry
            the coordinate loss only (logged as `tcs_unlabeled_loss`); an epoch is still one of `train_dataset`,
            and the pool is cycled, reshuffled (from `data_seed` or `seed`) at each pass.
        Other arguments are those of `transformers.Trainer`.

    Attributes:
        targets: what `hf_tcs.targets.prepare_targets` made of the training set and pool (coordinate columns,
            coordinate system, per-coordinate scale); None when no coordinate loss is trained.
        coordinate_system: the coordinate system saved with the student (`tcs/`), when there is one.
        tcs_head: the student's TCS head while it trains (None without a coordinate loss).
        projector_fit_r2: with `tcs_projector_init="least_squares"`, the share of the teacher coordinates' variance
            the fitted projector explains on held-out examples; the projector was set only if it reached
            `hf_tcs.student.PROJECTOR_MIN_R2` (None before `train`, or without the fit).
        model_card: the `ModelCardWriter` that remembers the card fields and writes the card on every save.
    """

    # The tags transformers' `add_model_tags` and hf_tcs' cards give the student (as TRL's trainers keep theirs).
    _tag_names = list(TAGS)
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
        teacher: Teacher | None = None,
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
        if teacher is not None and not isinstance(teacher, Teacher):
            raise TypeError(
                f"teacher= takes a loaded Teacher, got {type(teacher).__name__}: pass `teacher=load_teacher(name)`, "
                "or name the teacher with `teacher_model_name_or_path` in TCSConfig."
            )
        num_labels = check_student(model)
        check_training_labels(train_dataset, num_labels)
        eval_sets = eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval_dataset", eval_dataset)]
        for name, dataset in eval_sets:
            if dataset is not None:
                check_labels(dataset, num_labels, name)
        name_labels(model, train_dataset)  # a student without class names takes the training set's
        if unlabeled_dataset is not None:
            unlabeled_dataset = check_unlabeled_pool(unlabeled_dataset, train_dataset, model, args)

        self.targets: Targets | None = None
        self.tcs_head = None
        if args.tcs_loss_weight > 0 or args.tcs_lsh_weight > 0:
            self.targets = prepare_targets(
                args,
                train_dataset,
                coordinate_system=coordinate_system,
                teacher=teacher,
                unlabeled_dataset=unlabeled_dataset,
            )
            train_dataset, unlabeled_dataset = self.targets.train_dataset, self.targets.unlabeled_dataset
            self.tcs_head = attach_tcs_head(model, self.targets.num_coordinates)
        self.coordinate_system = self.targets.coordinate_system if self.targets else coordinate_system
        # For the model card: who taught the student when the coordinate system does not say, and what it cost.
        self.teacher_info = self.targets.teacher_info if self.targets else teacher_identity(teacher, args)
        self.model_card = ModelCardWriter()
        if self.targets is not None and self.targets.teacher_pass_seconds is not None:
            self.model_card.remember(teacher_pass_seconds=self.targets.teacher_pass_seconds)

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
            compute_metrics=compute_metrics or accuracy,
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
        self._eval_prefix = "eval"  # of the evaluation running now (see `evaluate`)
        self.unlabeled_dataset = unlabeled_dataset
        self._pool_view: tuple[datasets.Dataset, datasets.Dataset] | None = None  # (pool, its columns the model takes)
        self._unlabeled_position = (-1, 0)  # (optimizer step, micro-batch within it) of the last pool draw
        self.projector_fit_r2: float | None = None  # set by `train` with tcs_projector_init="least_squares"
        self._pool_order: tuple[int, np.ndarray] | None = None  # (pass over the pool, its permutation)
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    # ---- Data --------------------------------------------------------------------------------------------------

    def _set_signature_columns_if_needed(self):
        # Private Trainer method (checked in transformers 5.24.0; TRL overrides it for the same reason): keep the
        # coordinate column through `remove_unused_columns=True`, although it is no argument of model.forward.
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
        return self._collate(self._pool_view[1], indices)

    def _collate(self, dataset: datasets.Dataset, indices: list[int]) -> dict[str, Any]:
        """The rows ``indices`` of ``dataset`` (columns the student takes only) as one collated batch."""
        columns = dataset[indices]
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return self.data_collator(rows)

    @property
    def _data_seed(self) -> int:
        """The seed of the trainer's own draws (the pool's order, the projector's rows): `data_seed`, else `seed`."""
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def _pool_permutation(self, pass_index: int) -> np.ndarray:
        """The order of the pool in its `pass_index`-th pass (the last one is kept: passes are consecutive)."""
        if self._pool_order is None or self._pool_order[0] != pass_index:
            order = np.random.default_rng([self._data_seed, pass_index]).permutation(len(self.unlabeled_dataset))
            self._pool_order = (pass_index, order)
        return self._pool_order[1]

    # ---- Training --------------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """`Trainer.train`, after fitting the projector when `tcs_projector_init="least_squares"`.

        Here, before transformers wraps the model for distributed training (every process fits the same rows; DDP
        then starts from rank 0's weights), and only once per trainer; a run resumed from a checkpoint loads its
        weights instead.
        """
        if (
            self.tcs_head is not None
            and self.args.tcs_projector_init == "least_squares"
            and not resume_from_checkpoint
            and self.projector_fit_r2 is None
        ):
            self.projector_fit_r2 = self._fit_projector()
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)

    @torch.no_grad()
    def _fit_projector(self) -> float:
        """`fit_projector` on the head's inputs of up to `_PROJECTOR_FIT_EXAMPLES` training (then pool) examples,
        drawn with the seed.

        The inputs are read as training reads them, with dropout (batch-norm layers in eval mode, so that their
        statistics do not move): a map fitted on dropout-free features needs huge weights when the features are
        small (a BERT pooler's: std 0.03), and the training-time noise they then amplify scored 1.4 on Banking77,
        above the 0.95 of predicting zeros; fitted with the noise, 0.5. The dropout masks come from a fork of the
        random state, so that training then draws what it would draw without the fit (a refused fit, or a fit
        that leaves the projector as it was, changes nothing of the run).
        """
        rng = np.random.default_rng(self._data_seed)
        sources = [(self.train_dataset, "training")]
        if self.unlabeled_dataset is not None:
            sources.append((self.unlabeled_dataset, "unlabeled"))
        features, coordinates, taken = [], [], 0
        captured = []
        hook = self.tcs_head.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach()))
        model, training = self.model, self.model.training
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        device = self.args.device
        accelerator = [] if device.type == "cpu" else [device]
        with torch.random.fork_rng(devices=accelerator, device_type=device.type if accelerator else None):
            try:
                for dataset, description in sources:
                    view = self._remove_unused_columns(dataset, description)
                    count = min(len(view), _PROJECTOR_FIT_EXAMPLES - taken)
                    order = np.sort(rng.permutation(len(view))[:count]).tolist()
                    for start in range(0, count, self.args.per_device_eval_batch_size):
                        batch = self._prepare_inputs(
                            self._collate(view, order[start : start + self.args.per_device_eval_batch_size])
                        )
                        coordinates.append(batch.pop(self.args.tcs_coordinate_column))
                        batch.pop("labels", None)
                        model(**batch)
                        features.append(captured[-1])
                        captured.clear()
                    taken += count
            finally:
                hook.remove()
                model.train(training)
        hidden = torch.cat(features).flatten(0, -2)
        targets = torch.cat(coordinates).to(hidden.device, torch.float32) * self.targets.scale.to(hidden.device)
        if hidden.shape[0] != targets.shape[0]:  # a head that scores every token: one feature per token, not per row
            raise ValueError(
                f"tcs_projector_init='least_squares' needs one head input per example, but the head saw "
                f"{hidden.shape[0]} for {targets.shape[0]} examples: use tcs_projector_init='random' for this student."
            )
        r2 = fit_projector(self.tcs_head, hidden, targets, seed=self._data_seed)
        if r2 >= PROJECTOR_MIN_R2:
            logger.info(f"TCS projector fitted by least squares on {taken} examples: held-out R² {r2:.3f}.")
        else:
            logger.warning(
                f"tcs_projector_init='least_squares': the student's initial features explain next to nothing of the "
                f"teacher coordinates of held-out examples (R² {r2:.3f} on {taken} examples, below "
                f"{PROJECTOR_MIN_R2}; a student trained from scratch has no such features yet), so the projector "
                "keeps its random init. Use tcs_projector_init='random' for this student."
            )
        return r2

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
        scale = self.targets.scale.to(student.device, student.dtype)
        targets = targets.to(student.device, student.dtype) * scale
        head = self.tcs_head
        active = head.active
        if self.args.tcs_importance_loss == "total":
            # The mask multiplies the coordinate error too, so that tailoring measures the total loss (as the paper
            # reads): the gate's gradient then also carries 2 * (z_s - z_t)^2 per coordinate.
            error = (student - targets) * head.multiplier()
            coordinates_loss = coordinate_loss(error, torch.zeros_like(error), active, num_dims=self.targets.loss_dims)
        else:
            coordinates_loss = coordinate_loss(student, targets, active, num_dims=self.targets.loss_dims)
        hash_loss = None
        if self.args.tcs_lsh_weight > 0:
            projection = self.targets.lsh_projection.to(student.device, student.dtype)
            bias = self.targets.lsh_bias.to(student.device, student.dtype)
            hash_loss = lsh_loss(student, targets, projection, bias, active)
        return coordinates_loss, hash_loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        # The loss terms `log` adds take the prefix of the evaluation they belong to: with a dict of evaluation sets,
        # Trainer evaluates each one with the prefix `eval_<name>`.
        previous, self._eval_prefix = self._eval_prefix, metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._eval_prefix = previous

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self._gathered_losses(mode)
        if mode == "eval":
            metrics = {f"{self._eval_prefix}_{key}": value for key, value in metrics.items()}
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
        # Private Trainer method (checked in transformers 5.24.0; no public hook tells `save_model` that it runs for
        # a checkpoint): checkpoints keep the unfolded head (and its mask) so that training can resume from them.
        self._saving_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._saving_checkpoint = False

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # Private Trainer method (checked in transformers 5.24.0), the only place a resumed run's weights are loaded.
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
            check_finite_weights(self.model)
        if self.tcs_head is None or self._saving_checkpoint:
            return super().save_model(output_dir, _internal_call)
        # `_internal_call` is private Trainer API (checked in transformers 5.24.0): with it, save_model does not push.
        output_dir = output_dir or self.args.output_dir
        with folded_tcs_head(self.model) as model:
            # As an internal call: transformers would push from inside, and the push saves (and folds) again.
            super().save_model(output_dir, _internal_call=True)
            if self.args.should_save and getattr(model.config, "model_type", None) == "timm_wrapper":
                save_in_timm_format(model, output_dir)
        if self.args.should_save and self.coordinate_system is not None:
            self.coordinate_system.save_pretrained(os.path.join(output_dir, COORDINATE_SYSTEM_FOLDER))
        if self.is_world_process_zero():
            self.model_card.write(self, output_dir)
        if self.args.push_to_hub and not _internal_call:  # what transformers does for a user's call
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _save(self, output_dir: str | None = None, state_dict=None):
        # Private Trainer method (checked in transformers 5.24.0), the one that writes training_args.bin: a pickle of
        # the arguments, which must never carry the Hub token.
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
        self.model_card.remember(**fields)
        if self.is_world_process_zero():
            self.model_card.write(self, self.args.output_dir)

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

        A private Trainer method, and a copy of its body in transformers 5.24.0 (keep the two in step when raising
        the transformers bound): that body copies the checkpoint's files into `output_dir` and starts the upload
        within one call, so no override of a part of it can put the folded weights in between; calling it with a
        folded copy of the checkpoint instead would push that copy as `last-checkpoint/`, which cannot resume.
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
            self.coordinate_system.save_pretrained(os.path.join(output_dir, COORDINATE_SYSTEM_FOLDER))
        self.model_card.write(self, output_dir)
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
