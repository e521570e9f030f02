"""`tcs_projector_init="least_squares"`: the TCS projector starts as the least-squares map from the student's
features to the teacher coordinates (`hf_tcs.student.fit_projector`), fitted once at the start of `train()`."""

import datasets
import pytest
import torch
from helpers import assert_same_weights, column, interrupt_and_resume, make_args, resumable_args
from tiny_models import NUM_LABELS, make_student
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification

from hf_tcs import TCSDistillationTrainer
from hf_tcs.model_card import TCSModelCardData
from hf_tcs.student import TCSHead, attach_tcs_head, fit_projector


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("feature_scale", [1.0, 1e-3])
def test_fit_projector_recovers_a_linear_map_whatever_the_feature_scale(bias, feature_scale):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 8, generator=generator) * feature_scale
    mapping = torch.randn(8, 5, generator=generator) / feature_scale
    offset = torch.randn(5, generator=generator) if bias else torch.zeros(5)
    coordinates = features @ mapping + offset
    head = TCSHead(8, 5, 3, bias=bias)
    classifier = head.classifier.weight.clone()

    r2 = fit_projector(head, features, coordinates)

    assert r2 == pytest.approx(1.0, abs=1e-3)
    with torch.no_grad():
        head(features)
    torch.testing.assert_close(head.last_coordinates, coordinates, atol=0.05, rtol=0.02)
    assert torch.equal(head.classifier.weight, classifier), "only the projector is fitted"


def test_fit_projector_reports_the_held_out_share_it_explains_and_refuses_bad_input():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(400, 6, generator=generator)
    noise = torch.randn(400, 4, generator=generator)
    signal = features[:, :4]
    head = TCSHead(6, 4, 3)
    # Half the targets' variance is noise no linear map of the features can explain.
    assert fit_projector(head, features, signal + noise) == pytest.approx(0.5, abs=0.1)

    with pytest.raises(ValueError, match=r"features \(N, 6\) and coordinates \(N, 4\)"):
        fit_projector(head, features[:, :5], signal)
    with pytest.raises(ValueError, match=r"features \(N, 6\) and coordinates \(N, 4\)"):
        fit_projector(head, features, signal[:10])
    features[3, 2] = float("nan")
    weight = head.projector.weight.clone()
    with pytest.raises(ValueError, match="NaN or inf.*tcs_projector_init='random'"):
        fit_projector(head, features, signal)
    assert torch.equal(head.projector.weight, weight), "a refused fit leaves the projector as it was"


def test_features_that_predict_nothing_leave_the_projector_as_it_was():
    """What a student from scratch gives: features unrelated to the coordinates, nearly collinear (a random network
    maps every input to about the same point). Their least-squares map fits noise with huge weights; held out, it
    explains nothing, so the projector keeps its init."""
    generator = torch.Generator().manual_seed(0)
    common = torch.randn(1, 32, generator=generator)
    features = common + 1e-3 * torch.randn(200, 32, generator=generator)
    coordinates = torch.randn(200, 8, generator=generator)
    head = TCSHead(32, 8, 3)
    weight, bias = head.projector.weight.clone(), head.projector.bias.clone()
    assert fit_projector(head, features, coordinates) <= 0
    assert torch.equal(head.projector.weight, weight) and torch.equal(head.projector.bias, bias)
    assert fit_projector(head, features[:9], coordinates[:9]) == 0.0, "too few examples to hold any out"
    assert torch.equal(head.projector.weight, weight)

    # A weak signal (R² about 0.05, below the default floor of 0.1) is not used either, unless asked for.
    signal = torch.randn(2000, 32, generator=generator)
    weak = signal[:, :8] * 0.23 + torch.randn(2000, 8, generator=generator)
    r2 = fit_projector(head, signal, weak)
    assert 0.01 < r2 < 0.1 and torch.equal(head.projector.weight, weight)
    assert fit_projector(head, signal, weak, min_r2=0.0) == pytest.approx(r2)
    assert not torch.equal(head.projector.weight, weight)


def test_projector_init_takes_only_known_values(tmp_path):
    assert make_args(tmp_path).tcs_projector_init == "random"
    with pytest.raises(ValueError, match="tcs_projector_init='lsq'.*'random', 'least_squares'"):
        make_args(tmp_path, tcs_projector_init="lsq")


@pytest.fixture(scope="module")
def labelled_and_pool(image_features) -> tuple[datasets.Dataset, datasets.Dataset]:
    """24 labelled images and a pool of 16 (without a label column)."""
    return image_features.select(range(24)), image_features.select(range(24, 40)).remove_columns("label")


def head_inputs_and_targets(model, rows: datasets.Dataset, scale) -> tuple[torch.Tensor, torch.Tensor]:
    """The TCS head's inputs on ``rows`` (the tiny ViT has no dropout: eval mode reads what training reads) and their
    scaled teacher coordinates."""
    captured = []
    hook = model.classifier.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    batch = rows.with_format("torch")[:]
    with torch.no_grad():
        model.eval()(pixel_values=batch["pixel_values"])
    hook.remove()
    return captured[0], batch["tcs_coordinates"] * scale


def test_least_squares_init_fits_the_projector_on_training_and_pool_examples_before_the_first_step(
    tmp_path, labelled_and_pool
):
    labelled, pool = labelled_and_pool

    def trainer(init, lr=0.0):
        args = make_args(tmp_path, max_steps=1, learning_rate=lr, tcs_projector_init=init)
        return TCSDistillationTrainer(model=make_student(), args=args, train_dataset=labelled, unlabeled_dataset=pool)

    fitted = trainer("least_squares")
    initial = {name: tensor.clone() for name, tensor in fitted.model.state_dict().items()}
    assert fitted.projector_fit_r2 is None
    fitted.train()  # learning rate 0: the weights after training are the fitted ones

    # By hand: all 24 + 16 examples (fewer than the cap), the head's inputs, the least-squares map.
    model = make_student()
    attach_tcs_head(model, fitted.targets.num_coordinates)
    model.load_state_dict(initial)
    scale = fitted.targets.scale
    sets = (fitted.train_dataset, fitted.unlabeled_dataset)
    features, targets = zip(*(head_inputs_and_targets(model, rows, scale) for rows in sets), strict=True)
    r2 = fit_projector(model.classifier, torch.cat(features), torch.cat(targets), seed=0)
    assert fitted.projector_fit_r2 == pytest.approx(r2, abs=1e-6)
    assert 0.2 < r2 <= 1.0
    assert_same_weights(fitted.model, model)

    card = TCSModelCardData.from_trainer(fitted).render().content
    assert "**Projector init:** least squares" in card and f"{r2:.1%} of their variance on held-out" in card

    # The fitted head starts closer to the teacher: its first logged coordinate loss is lower.
    random_start = trainer("random")
    random_start.train()
    assert random_start.projector_fit_r2 is None
    assert "Projector init" not in TCSModelCardData.from_trainer(random_start).render().content
    assert fitted.state.log_history[0]["tcs_loss"] < 0.8 * random_start.state.log_history[0]["tcs_loss"]


def test_least_squares_init_draws_at_most_the_cap_with_the_seed_training_examples_first(
    tmp_path, labelled_and_pool, monkeypatch
):
    labelled, pool = labelled_and_pool
    seen = []

    def recording_fit(head, features, coordinates, **kwargs):
        seen.append(coordinates)
        return fit_projector(head, features, coordinates, **kwargs)

    monkeypatch.setattr("hf_tcs.trainer.fit_projector", recording_fit)

    def rows_fitted(cap, seed=0):
        monkeypatch.setattr("hf_tcs.trainer._PROJECTOR_FIT_EXAMPLES", cap)
        args = make_args(tmp_path, max_steps=1, tcs_projector_init="least_squares", seed=seed, data_seed=seed)
        trainer = TCSDistillationTrainer(
            model=make_student(), args=args, train_dataset=labelled, unlabeled_dataset=pool
        )
        trainer.train()
        train_targets = column(trainer.train_dataset, "tcs_coordinates") * trainer.targets.scale.numpy()
        pool_targets = column(trainer.unlabeled_dataset, "tcs_coordinates") * trainer.targets.scale.numpy()
        fitted = seen.pop().numpy()
        in_train = [bool((abs(train_targets - row).max(axis=1) < 1e-5).any()) for row in fitted]
        in_pool = [bool((abs(pool_targets - row).max(axis=1) < 1e-5).any()) for row in fitted]
        return fitted, in_train, in_pool

    fitted, in_train, in_pool = rows_fitted(30)
    assert len(fitted) == 30 and sum(in_train) == 24 and sum(in_pool) == 6, "all 24 training rows, then 6 of the pool"
    fitted, in_train, _ = rows_fitted(10)
    assert len(fitted) == 10 and all(in_train)
    assert (rows_fitted(10)[0] == fitted).all(), "the rows come from the seed"
    assert not (rows_fitted(10, seed=1)[0] == fitted).all()


def test_a_resumed_run_keeps_its_checkpoint_and_ends_like_an_uninterrupted_one(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool

    def run(output, **extra):
        args = resumable_args(tmp_path, output, tcs_projector_init="least_squares")
        return TCSDistillationTrainer(
            model=make_student(), args=args, train_dataset=labelled, unlabeled_dataset=pool, **extra
        )

    full = run("full")
    full.train()
    interrupted, resumed = interrupt_and_resume(run, tmp_path / "resumed")
    assert interrupted.projector_fit_r2 == pytest.approx(full.projector_fit_r2)
    assert resumed.projector_fit_r2 is None, "a resumed run loads its weights, it does not refit"
    assert_same_weights(full.model, resumed.model)


def test_cross_entropy_only_runs_have_no_projector_to_fit(tmp_path, labelled_and_pool):
    labelled, _ = labelled_and_pool
    args = make_args(tmp_path, max_steps=1, tcs_projector_init="least_squares", tcs_loss_weight=0.0)
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=labelled)
    trainer.train()
    assert trainer.tcs_head is None and trainer.projector_fit_r2 is None


def test_a_student_whose_features_predict_nothing_keeps_its_random_projector_and_says_so(
    tmp_path, labelled_and_pool, caplog
):
    labelled, _ = labelled_and_pool
    # Teacher "features" that are noise: nothing of the student's can predict them.
    noise = torch.randn(len(labelled), 24, generator=torch.Generator().manual_seed(0)).numpy()
    noisy = labelled.remove_columns("teacher_features").add_column("teacher_features", list(noise))
    args = make_args(tmp_path, max_steps=1, learning_rate=0.0, tcs_projector_init="least_squares")
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=noisy)
    initial = trainer.tcs_head.projector.weight.clone()
    with caplog.at_level("WARNING", logger="hf_tcs.trainer"):
        trainer.train()
    assert trainer.projector_fit_r2 < 0.1
    assert torch.equal(trainer.tcs_head.projector.weight, initial)
    assert "explain next to nothing of the teacher coordinates" in caplog.text
    assert "tcs_projector_init='random'" in caplog.text
    assert "Projector init" not in TCSModelCardData.from_trainer(trainer).render().content


def dropout_resnet() -> ResNetForImageClassification:
    """A tiny ResNet (batch norm) with dropout before its classifier, from seed 0."""
    torch.manual_seed(0)
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=NUM_LABELS
    )
    student = ResNetForImageClassification(config)
    student.classifier.insert(1, nn.Dropout(0.5))  # (Flatten, Dropout, Linear): dropout before the head
    return student


def test_the_fit_reads_features_with_dropout_as_training_does_and_leaves_batch_norm_statistics_alone(
    tmp_path, labelled_and_pool, monkeypatch
):
    """A map fitted on dropout-free features can need weights large enough to turn training's dropout noise into
    coordinates worse than zeros; the fit therefore sees the noise. Batch norm must not learn from the fit."""
    labelled, _ = labelled_and_pool
    seen = {}

    def recording_fit(head, features, coordinates, **kwargs):
        seen["features"] = features.clone()
        seen["norms"] = [m.running_mean.clone() for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)]
        return fit_projector(head, features, coordinates, **kwargs)

    monkeypatch.setattr("hf_tcs.trainer.fit_projector", recording_fit)
    student = dropout_resnet()
    norms = [m.running_mean.clone() for m in student.modules() if isinstance(m, nn.BatchNorm2d)]
    args = make_args(tmp_path, max_steps=1, tcs_projector_init="least_squares")
    trainer = TCSDistillationTrainer(model=student, args=args, train_dataset=labelled)
    trainer.train()

    for before, during in zip(norms, seen["norms"], strict=True):
        assert torch.equal(before, during), "batch-norm statistics are left as they were"
    pixels = trainer.train_dataset.with_format("torch")[:]["pixel_values"]
    captured = []
    hook = trainer.tcs_head.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        trainer.model.eval()(pixel_values=pixels)
    hook.remove()
    clean = captured[0]
    dropped = (seen["features"] == 0) & (clean != 0)
    assert 0.3 < dropped.float().mean() < 0.7, "about half the features were dropped, as training drops them"


def test_a_refused_fit_leaves_the_run_exactly_as_the_random_init_would(tmp_path, labelled_and_pool, monkeypatch):
    """The fit reads features with dropout; its masks come from a fork of the random state, so that a fit which
    leaves the projector as it was (refused) does not shift the dropout masks, data order or anything else of the
    training that follows."""
    labelled, _ = labelled_and_pool

    def run(init):
        args = make_args(tmp_path / init, max_steps=3, tcs_projector_init=init)
        trainer = TCSDistillationTrainer(model=dropout_resnet(), args=args, train_dataset=labelled)
        trainer.train()
        return trainer

    refused = {}

    def refusing_fit(head, features, coordinates, **kwargs):
        refused["examples"] = features.shape[0]
        return 0.0  # what `fit_projector` returns when the features predict nothing: the projector is left alone

    monkeypatch.setattr("hf_tcs.trainer.fit_projector", refusing_fit)
    fitted, random_start = run("least_squares"), run("random")
    assert refused["examples"] == len(labelled) and fitted.projector_fit_r2 == 0.0
    assert_same_weights(fitted.model, random_start.model)
