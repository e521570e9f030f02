"""Tailoring: `select_coordinates` (ties, floor), the selection schedules and the loss that measures importance,
checked through what a training run logs (`tcs_active_coordinates`) and the gradients it takes."""

import torch
from helpers import losses_by_hand, make_args, scaled_targets, train_and_grads
from tiny_models import make_student

from hf_tcs import TCSDistillationTrainer
from hf_tcs.selection import select_coordinates

ALL = torch.ones(6, dtype=torch.bool)


def dropped(importance, active=ALL, drop_ratio=0.5, min_active=1) -> list[int]:
    indices = select_coordinates(torch.as_tensor(importance, dtype=torch.float32), active, drop_ratio, min_active)
    assert indices.dtype == torch.long
    return sorted(indices.tolist())


def test_the_least_important_active_coordinates_are_dropped():
    assert dropped([0.3, 0.1, 0.6, 0.2, 0.5, 0.4]) == [0, 1, 3]
    # An inactive coordinate is never dropped again, however unimportant: the share is of the active ones.
    active = torch.tensor([True, False, True, True, True, True])
    assert dropped([0.3, 0.0, 0.6, 0.2, 0.5, 0.4], active) == [0, 3]
    assert dropped([0.3, 0.1, 0.6, 0.2, 0.5, 0.4], drop_ratio=0.4) == [1, 3]  # floor(0.4 x 6) = 2


def test_ties_drop_the_later_lower_variance_coordinates_first():
    assert dropped([1.0] * 6) == [3, 4, 5]
    assert dropped([0.1, 0.5, 0.1, 0.9, 0.1, 0.8], drop_ratio=1 / 3) == [2, 4]
    assert dropped([0.1, 0.5, 0.1, 0.9, 0.1, 0.8]) == [0, 2, 4]


def test_the_floor_keeps_min_active_coordinates():
    assert dropped([0.3, 0.1, 0.6, 0.2, 0.5, 0.4], min_active=5) == [1]
    for floor in (6, 7):
        assert dropped([0.3, 0.1, 0.6, 0.2, 0.5, 0.4], min_active=floor) == []
    active = torch.tensor([True, True, True, False, False, False])
    assert dropped([0.3, 0.1, 0.6, 0.0, 0.0, 0.0], active, drop_ratio=0.9, min_active=2) == [1]
    assert dropped([0.3, 0.1, 0.6, 0.2, 0.5, 0.4], drop_ratio=0.1) == []  # floor(0.6) drops nothing


def tailored_run(tmp_path, dataset, **overrides) -> TCSDistillationTrainer:
    """A tiny student trained on ``dataset`` for 2 epochs of 4 steps, tailoring halving the active coordinates at each
    selection step (at most 2), down to 2; ``overrides`` go to `make_args`."""
    settings = dict(max_steps=-1, num_train_epochs=2, tcs_selection_rounds=2, tcs_drop_ratio=0.5, tcs_min_components=2)
    args = make_args(tmp_path, **{**settings, **overrides})
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=dataset)
    trainer.train()
    return trainer


def active_per_step(trainer) -> list[int]:
    return [log["tcs_active_coordinates"] for log in trainer.state.log_history if "loss" in log]


def test_the_epoch_strategy_selects_at_the_end_of_each_epoch_for_its_rounds(tmp_path, image_features):
    trainer = tailored_run(tmp_path, image_features, num_train_epochs=3, tcs_selection_strategy="epoch")
    assert active_per_step(trainer) == [16] * 4 + [8] * 4 + [4] * 4
    assert trainer.tcs_head.num_active == 4, "no third selection at the end of epoch 3: the 2 rounds are done"


def test_fractional_selection_steps_are_a_share_of_the_total_steps(tmp_path, image_features):
    # 8 steps in all, which the run derives itself (no max_steps): 0.3 of them is ceil(2.4) = 3 steps.
    trainer = tailored_run(tmp_path, image_features, tcs_selection_strategy="steps", tcs_selection_steps=0.3)
    assert trainer.state.global_step == 8
    assert active_per_step(trainer) == [16, 16, 8, 8, 8, 4, 4, 4]


def one_selection_step(tmp_path, image_features, importance_loss: str):
    """One step over all 64 examples that ends with a selection (4 of 16 coordinates dropped); the raw gradients."""
    args = make_args(
        tmp_path,
        max_steps=1,
        per_device_train_batch_size=64,
        max_grad_norm=0,  # the gate's gradient as the loss gives it, unclipped
        tcs_selection_strategy="steps",
        tcs_selection_steps=1,
        tcs_selection_rounds=1,
        tcs_drop_ratio=0.25,
        tcs_min_components=4,
        tcs_importance_loss=importance_loss,
    )
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features)
    cs = trainer.coordinate_system
    losses_by_hand(trainer, cs.global_scale, num_dims=cs.feature_dim)  # leaves the initial z_s in the head
    student = trainer.tcs_head.last_coordinates
    targets = scaled_targets(trainer, cs.global_scale)
    ((grads,),) = [[step[name] for name in step if "tcs_gate" in name] for step in train_and_grads(trainer)]
    return trainer, grads, student, targets


def test_importance_on_the_total_loss_adds_the_coordinate_error_to_the_gate_gradient(tmp_path, image_features):
    task, task_grad, student, targets = one_selection_step(tmp_path, image_features, "task")
    total, total_grad, _, _ = one_selection_step(tmp_path, image_features, "total")
    # "total" measures d(CE + w x coordinate loss)/dgate: the coordinate term adds w x mean(2 (z_s - z_t)^2) / D.
    added = task.args.tcs_loss_weight * (2 * (student - targets) ** 2).mean(dim=0) / task.coordinate_system.feature_dim
    torch.testing.assert_close(total_grad - task_grad, added, rtol=1e-4, atol=1e-7)
    # Each run drops the coordinates its own importance (|dL/dgate|) ranks lowest...
    for trainer, grad in ((task, task_grad), (total, total_grad)):
        expected = select_coordinates(grad.abs(), torch.ones(16, dtype=torch.bool), 0.25, 4)
        assert sorted((~trainer.tcs_head.active).nonzero().flatten().tolist()) == sorted(expected.tolist())
    # ...so measuring the total loss changes which coordinates go.
    assert not torch.equal(task.tcs_head.active, total.tcs_head.active)
