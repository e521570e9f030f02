"""Tailoring: drop, for good, the teacher coordinates that matter least to the student's task.

The importance of coordinate j is its accumulated first-order saliency `|dL/dmask_j|`, read from the gradient of the
head's `tcs_gate` after every optimizer-step's backward (all micro-batches and, under DDP, all ranks included).
At each scheduled selection step the least important share of the still-active coordinates is masked out and the
accumulators restart, so each step judges the coordinates over its own interval. Selection steps come early in
training; a floor keeps a minimum number of coordinates.

The schedule is derived from the trainer state (global step / epoch) and the mask and accumulators are buffers of
the head, so a run resumed from a checkpoint makes exactly the same choices as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math

import torch
from transformers import TrainerCallback

from .student import TCSHead

logger = logging.getLogger(__name__)

__all__ = ["TailoringCallback", "select_coordinates"]


def select_coordinates(
    importance: torch.Tensor, active: torch.Tensor, drop_ratio: float, min_active: int
) -> torch.Tensor:
    """Indices of the active coordinates to drop: the `drop_ratio` least important, never below `min_active`.

    Ties are broken towards dropping the later (lower-variance) coordinate, so the choice is deterministic.
    """
    num_active = int(active.sum())
    num_drop = min(math.floor(drop_ratio * num_active), max(num_active - min_active, 0))
    if num_drop <= 0:
        return torch.zeros(0, dtype=torch.long)
    candidates = active.nonzero().flatten().cpu()
    scores = importance.detach().double().cpu()[candidates]
    # stable sort on (importance, -index): equal importances drop the higher index first
    order = sorted(range(len(candidates)), key=lambda i: (scores[i].item(), -candidates[i].item()))
    return candidates[order[:num_drop]]


class TailoringCallback(TrainerCallback):
    """Runs the selection steps of tailoring on a `TCSHead` during `Trainer.train`.

    Args:
        head: the student's head (its `tcs_gate` gradient measures importance).
        strategy: `"epoch"` (a step at the end of each epoch) or `"steps"` (every `steps` optimizer steps).
        steps: with `"steps"`: an integer, or a float in (0, 1) read as a share of the total training steps.
        rounds: maximum number of selection steps.
        drop_ratio: share of the active coordinates dropped per step.
        min_components: floor on the number of active coordinates.
    """

    def __init__(
        self, head: TCSHead, *, strategy: str, steps: float, rounds: int, drop_ratio: float, min_components: int
    ):
        self.head = head
        self.strategy = strategy
        self.steps = steps
        self.rounds = rounds
        self.drop_ratio = drop_ratio
        self.min_components = min_components
        self.interval = None
        if head.num_coordinates <= min_components:
            logger.warning(
                f"Tailoring is on but cannot drop anything: the coordinate system keeps {head.num_coordinates} "
                f"coordinates and tcs_min_components={min_components} keeps at least that many. Lower "
                "tcs_min_components, keep more components (tcs_num_components), or set tcs_selection_strategy='no'."
            )

    def on_train_begin(self, args, state, control, **kwargs):
        if self.strategy == "steps":
            self.interval = math.ceil(self.steps * state.max_steps) if self.steps < 1 else int(self.steps)

    def selections_done(self, state) -> int:
        """Selection steps already taken, derived from the trainer state (so resuming needs no extra state)."""
        if self.strategy == "epoch":
            return min(self.rounds, math.floor((state.epoch or 0) + 1e-6))
        return min(self.rounds, state.global_step // self.interval)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        gate = self.head.tcs_gate
        if gate.grad is not None and self.selections_done(state) < self.rounds:
            self.head.importance += gate.grad.detach().abs().to(self.head.importance.dtype)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if self.strategy == "steps" and step % self.interval == 0 and step // self.interval <= self.rounds:
            self.select()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.strategy == "epoch" and math.floor(state.epoch + 1e-6) <= self.rounds:
            self.select()

    @torch.no_grad()
    def select(self) -> None:
        """Drop the least important active coordinates and restart the importance accumulators."""
        head = self.head
        drop = select_coordinates(head.importance, head.active, self.drop_ratio, self.min_components)
        head.drop(drop)
        head.importance.zero_()
