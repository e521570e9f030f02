"""Tests for hf_tcs.losses, each loss called on its own."""

import pytest
import torch
import torch.nn.functional as F

from hf_tcs.losses import coordinate_loss, lsh_bias, lsh_loss, lsh_projection, masked_cross_entropy


@pytest.fixture
def coordinates() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    return student, torch.randn(8, 6, generator=generator, dtype=torch.float64)


def test_coordinate_loss_is_mse_without_mask(coordinates):
    student, target = coordinates
    torch.testing.assert_close(coordinate_loss(student, target), ((student - target) ** 2).mean())
    torch.testing.assert_close(
        coordinate_loss(student, target, reduction="sum"), ((student - target) ** 2).mean(1).sum()
    )
    torch.testing.assert_close(coordinate_loss(student, target, reduction="none"), ((student - target) ** 2).mean(1))


@pytest.mark.parametrize("as_bool", [True, False])
def test_coordinate_loss_averages_over_active_coordinates(coordinates, as_bool):
    student, target = coordinates
    active = torch.tensor([True, False, True, True, False, False])
    mask = active if as_bool else active.double()
    expected = ((student - target)[:, active] ** 2).mean()
    torch.testing.assert_close(coordinate_loss(student, target, mask), expected)

    shifted = target.clone()
    shifted[:, ~active] += 100.0  # inactive coordinates do not contribute
    torch.testing.assert_close(coordinate_loss(student, shifted, mask), expected)

    coordinate_loss(student, target, mask).backward()
    assert (student.grad[:, ~active] == 0).all() and (student.grad[:, active] != 0).all()


def test_coordinate_loss_num_dims_fixes_the_denominator(coordinates):
    student, target = coordinates
    active = torch.tensor([True, False, True, True, False, False])
    expected = ((student - target)[:, active] ** 2).sum(1).mean() / 768
    torch.testing.assert_close(coordinate_loss(student, target, active, num_dims=768), expected)
    with pytest.raises(ValueError, match="num_dims"):
        coordinate_loss(student, target, num_dims=0)


def test_coordinate_loss_fractional_mask_weights(coordinates):
    student, target = coordinates
    weights = torch.tensor([0.5, 0.0, 0.25, 0.0, 0.0, 0.0], dtype=torch.float64)
    expected = (((student - target) ** 2) * weights).sum(1).mean() / 0.75
    torch.testing.assert_close(coordinate_loss(student, target, weights), expected)


def test_coordinate_loss_does_not_backprop_into_target(coordinates):
    student, target = coordinates
    target.requires_grad_(True)
    coordinate_loss(student, target).backward()
    assert target.grad is None


@pytest.mark.parametrize("case", ["empty_batch", "no_active_coordinate"])
def test_coordinate_loss_degenerate_is_connected_zero(case):
    rows = 0 if case == "empty_batch" else 3
    student = torch.randn(rows, 4, requires_grad=True)
    mask = torch.zeros(4, dtype=torch.bool) if case == "no_active_coordinate" else None
    loss = coordinate_loss(student, torch.randn(rows, 4), mask)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_coordinate_loss_shape_errors():
    with pytest.raises(ValueError, match=r"\(4, 6\).*\(4, 5\).*`tcs_coordinates` column width.*k"):
        coordinate_loss(torch.zeros(4, 6), torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"mask has shape \(5,\).*\(6,\)"):
        coordinate_loss(torch.zeros(4, 6), torch.zeros(4, 6), torch.ones(5))
    with pytest.raises(ValueError, match="reduction"):
        coordinate_loss(torch.zeros(4, 6), torch.zeros(4, 6), reduction="max")


def test_coordinate_loss_upcasts_half_precision():
    student = torch.randn(4, 6).bfloat16().requires_grad_(True)
    assert coordinate_loss(student, torch.randn(4, 6)).dtype == torch.float32


def test_masked_cross_entropy_ignores_unlabelled():
    logits = torch.randn(5, 3, requires_grad=True)
    labels = torch.tensor([0, -100, 2, 1, -100])
    torch.testing.assert_close(
        masked_cross_entropy(logits, labels), F.cross_entropy(logits[labels >= 0], labels[labels >= 0])
    )


def test_masked_cross_entropy_all_unlabelled_is_connected_zero():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.full((3,), -100))
    assert loss.item() == 0.0 and not loss.isnan() and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_masked_cross_entropy_shape_error():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5,\)"):
        masked_cross_entropy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


def test_lsh_projection_is_deterministic_and_scaled():
    projection = lsh_projection(64, 512, seed=3)
    assert projection.shape == (64, 512) and not projection.requires_grad
    assert torch.equal(projection, lsh_projection(64, 512, seed=3))
    assert not torch.equal(projection, lsh_projection(64, 512, seed=4))
    assert abs(projection.std().item() - 64**-0.5) < 0.01
    assert abs(lsh_projection(64, 512, std=2.0).std().item() - 2.0) < 0.05


def test_lsh_bias_balances_bits():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(1000, 8, generator=generator) * 3 + 5  # off-centre, so bias-free bits are unbalanced
    projection = lsh_projection(8, 32)
    assert ((teacher @ projection > 0).float().mean(0) - 0.5).abs().max() > 0.3
    bias = lsh_bias(teacher, projection)
    assert bias.shape == (32,)
    balance = (teacher @ projection + bias > 0).float().mean(0)
    assert (balance - 0.5).abs().max() <= 0.01
    with pytest.raises(ValueError, match=r"\(1000, 8\).*\(7, 32\)"):
        lsh_bias(teacher, lsh_projection(7, 32))


def test_lsh_loss_decreases_as_student_approaches_target():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(64, 8, generator=generator)
    projection = lsh_projection(8, 64)
    bias = lsh_bias(target, projection)
    far = torch.randn(64, 8, generator=generator)
    losses = [lsh_loss(far + t * (target - far), target, projection, bias).item() for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert losses == sorted(losses, reverse=True)

    student = far.clone().requires_grad_(True)
    loss = lsh_loss(student, target, projection, bias)
    loss.backward()
    assert student.grad.abs().sum() > 0


def test_lsh_loss_mask_and_degenerate_cases():
    generator = torch.Generator().manual_seed(0)
    student, target = torch.randn(16, 4, generator=generator), torch.randn(16, 4, generator=generator)
    projection = lsh_projection(4, 16)
    bias = lsh_bias(target, projection)
    mask = torch.tensor([True, True, False, False])
    noisy = student.clone()
    noisy[:, 2:] += 50.0  # inactive coordinates do not change the loss
    torch.testing.assert_close(
        lsh_loss(noisy, target, projection, bias, mask), lsh_loss(student, target, projection, bias, mask)
    )

    as_double = lsh_loss(student.double(), target, projection, bias.double(), mask)
    assert as_double.dtype == torch.float64
    torch.testing.assert_close(as_double.float(), lsh_loss(student, target, projection, bias, mask))

    empty = torch.zeros(0, 4, requires_grad=True)
    loss = lsh_loss(empty, torch.zeros(0, 4), projection, bias)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    with pytest.raises(ValueError, match="lsh_projection"):
        lsh_loss(student, target, lsh_projection(5, 16), bias)
