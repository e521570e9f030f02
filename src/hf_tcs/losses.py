"""TCS training losses as pure functions: masked coordinate MSE, cross-entropy, and the optional eLSH loss.

Every loss returns a scalar that stays connected to the student's graph even when nothing contributes (empty batch, no
active coordinate, no labelled example), so ``backward()`` and DDP's gradient reduction never see a NaN or a detached
tensor. Losses are computed in at least float32 so bf16/fp16 students do not lose precision in the reduction.
"""

from typing import Literal

import torch
import torch.nn.functional as F

from .columns import IGNORE_INDEX

__all__ = ["coordinate_loss", "lsh_bias", "lsh_loss", "lsh_projection", "masked_cross_entropy"]


def _upcast(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _check_coordinates(student: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Validate ``(B, k)`` student/target and a ``(k,)`` mask; return the mask as float weights (ones if None)."""
    if student.ndim != 2 or student.shape != target.shape:
        raise ValueError(
            f"Student coordinates have shape {tuple(student.shape)} but target coordinates have shape "
            f"{tuple(target.shape)}; both must be (batch, k): the `tcs_coordinates` column width must equal the "
            "coordinate system's k, and the student head must be attached with the same k."
        )
    k = student.shape[1]
    if mask is None:
        return student.new_ones(k, dtype=torch.float32)
    if mask.shape != (k,):
        raise ValueError(f"mask has shape {tuple(mask.shape)} but must be ({k},), one entry per coordinate.")
    return mask.to(device=student.device, dtype=torch.float32)


def coordinate_loss(
    student: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    reduction: Literal["mean", "sum", "none"] = "mean",
    num_dims: int | None = None,
) -> torch.Tensor:
    """Masked MSE between student coordinates ``z_s`` and teacher coordinates ``z_t``.

    Each example's loss is the mean squared error over the active coordinates only, so the loss weight keeps its
    meaning however many coordinates tailoring has dropped; a float ``mask`` acts as per-coordinate weights.
    With ``num_dims=D`` the sum of squared errors over the active coordinates is divided by the fixed ``D`` instead:
    with ``D`` the teacher's feature dimension this is the feature-space MSE restricted to the active coordinates
    (the PCA basis is orthonormal), which shrinks as coordinates are dropped.

    Args:
        student: ``(B, k)`` student coordinates (gradients flow into these).
        target: ``(B, k)`` teacher coordinates (treated as constants).
        mask: ``(k,)`` bool/float, True/1 = active; None = all active.
        reduction: ``"mean"`` over examples (default), ``"sum"``, or ``"none"`` for the ``(B,)`` per-example losses.
        num_dims: fixed denominator ``D`` of each example's loss; None = the number (weight) of active coordinates.

    Returns:
        A scalar (or ``(B,)`` for ``"none"``); 0 connected to ``student`` for an empty batch or no active coordinate.
    """
    weights = _check_coordinates(student, target, mask)
    if num_dims is not None and num_dims < 1:
        raise ValueError(f"num_dims must be >= 1, got {num_dims}; pass the teacher's feature dimension, or None.")
    student = _upcast(student)
    squared_error = (student - target.detach().to(student.dtype)) ** 2
    # Clamped so that no active coordinate gives 0, not NaN.
    denominator = weights.sum().clamp(min=1e-12) if num_dims is None else num_dims
    per_example = (squared_error * weights).sum(dim=1) / denominator
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return per_example.sum()
    if reduction == "mean":
        return per_example.sum() / max(per_example.numel(), 1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled examples, ignoring label -100.

    Args:
        logits: ``(B, C)`` (or ``(*batch, C)``) unnormalised scores.
        labels: ``(B,)`` (or ``(*batch,)``) class indices, -100 for unlabelled examples.

    Returns:
        A scalar; 0 connected to ``logits`` when every label is -100.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits have shape {tuple(logits.shape)} but labels have shape {tuple(labels.shape)}; expected logits "
            "(batch, num_labels) and labels (batch,) with one class index (or -100) per example."
        )
    flat_logits, flat_labels = _upcast(logits).reshape(-1, logits.shape[-1]), labels.reshape(-1).long()
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (flat_labels != IGNORE_INDEX).sum().clamp(min=1)


def lsh_projection(num_coordinates: int, num_bits: int, *, seed: int = 0, std: float | None = None) -> torch.Tensor:
    """Frozen random Gaussian hyperplanes ``P`` of shape ``(k, num_bits)`` for the eLSH loss.

    Each column is one locality-sensitive hash bit ``sign(z @ p + b)``: matching these bits aligns the *direction* of
    the student's coordinates with the teacher's, complementing the MSE that aligns their values. ``std`` defaults to
    ``1 / sqrt(k)`` so a projected logit has the scale of the coordinates' RMS. The same ``seed`` gives the same ``P``
    on every process, which DDP training needs.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = num_coordinates**-0.5 if std is None else std
    return torch.randn(num_coordinates, num_bits, generator=generator) * scale


def lsh_bias(teacher_coordinates: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """Per-bit bias ``(num_bits,)`` = minus the median of ``teacher_coordinates @ projection`` over examples.

    Centres every hyperplane on the teacher's data so each bit is 1 for about half of the examples (a bit that is
    always 0 or 1 carries no information). Compute it once from the teacher coordinates ``(N, k)`` of the training set
    (multiply them by the mask first to rebalance after tailoring).
    """
    if teacher_coordinates.ndim != 2 or teacher_coordinates.shape[1] != projection.shape[0]:
        raise ValueError(
            f"teacher_coordinates have shape {tuple(teacher_coordinates.shape)} but the projection is "
            f"{tuple(projection.shape)}; expected (N, k) and (k, num_bits) with the same k."
        )
    teacher_coordinates = _upcast(teacher_coordinates)
    projected = teacher_coordinates @ projection.to(teacher_coordinates.device, teacher_coordinates.dtype)
    return -projected.median(dim=0).values


def lsh_loss(
    student: torch.Tensor,
    target: torch.Tensor,
    projection: torch.Tensor,
    bias: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """eLSH loss: BCE-with-logits of the student's hash logits against the teacher's hash bits.

    Args:
        student: ``(B, k)`` student coordinates.
        target: ``(B, k)`` teacher coordinates.
        projection: ``(k, num_bits)`` from `lsh_projection`.
        bias: ``(num_bits,)`` from `lsh_bias`.
        mask: ``(k,)`` bool/float active coordinates; inactive ones are zeroed on both sides.

    Returns:
        A scalar, the mean over examples and bits; 0 connected to ``student`` for an empty batch.
    """
    weights = _check_coordinates(student, target, mask)
    if projection.shape[0] != student.shape[1] or bias.shape != projection.shape[1:]:
        raise ValueError(
            f"projection {tuple(projection.shape)} and bias {tuple(bias.shape)} do not fit coordinates with "
            f"k={student.shape[1]}; build them with `lsh_projection(k, num_bits)` and `lsh_bias(teacher, projection)`."
        )
    student = _upcast(student)
    projection, bias = projection.to(student.device, student.dtype), bias.to(student.device, student.dtype)
    logits = (student * weights) @ projection + bias
    with torch.no_grad():
        bits = ((target.to(student.dtype) * weights) @ projection + bias > 0).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, bits, reduction="sum") / max(logits.numel(), 1)
