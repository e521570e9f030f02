"""Online feature distillation, the baseline TCS replaces: the frozen teacher runs on every training batch.

The Hugging Face guide's pattern (`Trainer` subclass, teacher in eval mode under `torch.no_grad()`), with a feature
loss instead of logits, since a self-supervised teacher has no logits for the task:

    loss = CE(student logits, labels) + kd_weight * MSE(Linear(d_s -> D)(h_s), feature_scale * (f_t - feature_mean))

- ``h_s`` is the student's pooled feature, exactly what its classifier sees (captured by a hook on the classifier that
  `hf_tcs.student.find_classifier` finds), i.e. what the TCS head's ``Linear(d_s -> k)`` reads;
- ``f_t`` is the teacher's feature of the batch: an `hf_tcs.Teacher` run by `encode` on the raw inputs (texts or PIL
  images, through the teacher's own preprocessing: the very features of the one-off TCS teacher pass), or a
  transformers vision encoder fed with the student's own ``pixel_values`` (its CLS token after the final norm);
- the MSE is a mean over the D teacher dimensions and the batch, the normalisation of TCS's coordinate loss; with
  ``feature_mean`` / ``feature_scale`` = the coordinate system's mean and global scale (statistics of the training
  features: the targets are standardised as TCS's are) and ``kd_weight`` = ``tcs_loss_weight``, it is the TCS loss
  with every component kept, in the teacher's own basis, and the teacher forwarded online.

Used by `bench_banking77.py`, `bench_cifar10.py` and `bench_train_step.py`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from hf_tcs import Teacher
from hf_tcs.losses import masked_cross_entropy
from hf_tcs.student import find_classifier

__all__ = ["FeatureKDStudent", "OnlineFeatureKDTrainer", "RawColumnsCollator", "accuracy"]


class FeatureKDStudent(nn.Module):
    """A classification student plus the learnable ``Linear(d_s -> D)`` that maps its pooled feature to the teacher's.

    ``forward`` is the student's own forward (its outputs are returned unchanged); the projection of the classifier's
    input is left in ``projected``. The ``labels`` argument only tells `Trainer` where the labels are.
    """

    def __init__(self, student: nn.Module, teacher_dim: int):
        super().__init__()
        self.student = student
        _, _, classifier = find_classifier(student)
        self.projector = nn.Linear(classifier.in_features, teacher_dim)
        self.projected: torch.Tensor | None = None
        self._pooled: torch.Tensor | None = None
        classifier.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple) -> None:
        self._pooled = args[0]

    def forward(self, labels: torch.Tensor | None = None, **inputs):
        outputs = self.student(**inputs)
        self.projected = self.projector(self._pooled)
        return outputs


class RawColumnsCollator:
    """Collates the student's inputs with ``collator`` and passes the raw ``columns`` (texts, images) as lists."""

    def __init__(self, collator, columns: list[str]):
        self.collator, self.columns = collator, columns

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        features = [dict(example) for example in features]
        # An evaluation set may leave the raw column out: the teacher does not run in evaluation.
        raw = {column: [example.pop(column, None) for example in features] for column in self.columns}
        # An inner collator that makes the raw column itself (the augmented views the student sees) wins.
        return {**raw, **self.collator(features)}


def accuracy(eval_prediction) -> dict[str, float]:
    """Accuracy over the labelled examples."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    labels = eval_prediction.label_ids
    labelled = labels != -100
    return {"accuracy": float((np.asarray(logits).argmax(-1)[labelled] == labels[labelled]).mean())}


class OnlineFeatureKDTrainer(Trainer):
    """`Trainer` with a frozen teacher in the loop and a feature-regression loss (see the module docstring).

    Args:
        model: a plain HF classification student; it is wrapped in `FeatureKDStudent` here.
        teacher: an `hf_tcs.Teacher` (with ``teacher_input_column``: encoded from that raw column of the batch) or a
            transformers vision encoder (fed with the student's ``pixel_values``; CLS token of ``last_hidden_state``).
        teacher_input_column: the raw column (``"text"``, ``"image"``) the `Teacher` reads; kept in the batch.
        kd_weight: weight of the feature loss.
        feature_mean: subtracted from the teacher features (none by default; the projection's bias can learn it).
        feature_scale: the centred teacher features are multiplied by it (TCS's global scale makes the losses
            comparable).
        Other arguments are those of `transformers.Trainer`; ``compute_metrics`` defaults to accuracy.

    Evaluation runs no teacher: its loss is the cross-entropy, and its metric the accuracy.
    """

    # compute_loss returns a per-batch mean: Trainer divides it by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: nn.Module,
        *args,
        teacher: Teacher | nn.Module,
        teacher_input_column: str | None = None,
        kd_weight: float = 1.0,
        feature_mean: np.ndarray | None = None,
        feature_scale: float = 1.0,
        **kwargs,
    ):
        if isinstance(teacher, Teacher):
            if teacher_input_column is None:
                raise ValueError("An hf_tcs Teacher reads raw inputs: pass teacher_input_column ('text', 'image').")
            teacher_dim = teacher.feature_dim
        else:
            teacher.eval().requires_grad_(False)
            teacher_dim = teacher.config.hidden_size
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = accuracy
        super().__init__(FeatureKDStudent(model, teacher_dim), *args, **kwargs)
        self.teacher, self.teacher_input_column = teacher.to(self.args.device), teacher_input_column
        self.kd_weight, self.feature_scale = kd_weight, feature_scale
        self.feature_mean = None if feature_mean is None else torch.tensor(feature_mean, dtype=torch.float32)
        if teacher_input_column is not None:
            self.data_collator = RawColumnsCollator(self.data_collator, [teacher_input_column])

    def _set_signature_columns_if_needed(self):
        # The columns the student reads (not the wrapper's **inputs), the labels and the teacher's raw column.
        if self._signature_columns is None:
            columns = list(inspect.signature(self.model.student.forward).parameters)
            columns += ["label", "label_ids", *self.label_names]
            if self.teacher_input_column is not None:
                columns.append(self.teacher_input_column)
            self._signature_columns = columns

    @torch.no_grad()
    def teacher_features(self, inputs: dict[str, Any], raw: list | None) -> torch.Tensor:
        """The teacher's features of the batch, float32."""
        if isinstance(self.teacher, Teacher):
            return torch.from_numpy(self.teacher.encode(raw))
        return self.teacher(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0].float()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        raw = inputs.pop(self.teacher_input_column, None) if self.teacher_input_column else None
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = masked_cross_entropy(outputs.logits, labels)
        if model.training:
            projected = self.accelerator.unwrap_model(model).projected
            target = self.teacher_features(inputs, raw)
            if self.feature_mean is not None:
                target = target - self.feature_mean.to(target.device)
            target = target.to(projected.device, projected.dtype) * self.feature_scale
            loss = loss + self.kd_weight * F.mse_loss(projected, target)
        return (loss, outputs) if return_outputs else loss
