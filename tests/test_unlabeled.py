"""`TCSDistillationTrainer(unlabeled_dataset=...)`: a pool of unlabelled examples added to every labelled batch."""

import datasets
import numpy as np
import pytest
import torch
from helpers import assert_same_weights, column, interrupt_and_resume, make_args, resumable_args, train_and_grads
from tiny_models import make_student
from transformers import default_data_collator

from hf_tcs import CoordinateSystem, TCSDistillationTrainer
from hf_tcs.losses import coordinate_loss
from hf_tcs.student import attach_tcs_head, student_coordinates


@pytest.fixture(scope="module")
def labelled_and_pool(image_features) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The first 32 images with labels, the last 32 as a pool without a label column."""
    return image_features.select(range(32)), image_features.select(range(32, 64)).remove_columns("label")


class PoolRecorder:
    """The student's data collator, recording which pool rows each batch of unlabelled (label-less) rows holds; the
    rows are found by their pixels, which differ for every image."""

    def __init__(self, pool: datasets.Dataset):
        self.pixels = column(pool, "pixel_values").reshape(len(pool), -1)
        self.batches: list[list[int]] = []

    def __call__(self, features):
        if not {"label", "labels"} & features[0].keys():
            self.batches.append([self.row(np.asarray(example["pixel_values"])) for example in features])
        return default_data_collator(features)

    def row(self, pixels: np.ndarray) -> int:
        (match,) = np.flatnonzero(np.abs(self.pixels - pixels.reshape(1, -1)).max(axis=1) < 1e-6)
        return int(match)


class RecordingTrainer(TCSDistillationTrainer):
    """Records the labelled size of every training micro-batch and, through its collator, the pool rows drawn."""

    def __init__(self, *args, unlabeled_dataset=None, **kwargs):
        self.pool = PoolRecorder(unlabeled_dataset) if unlabeled_dataset is not None else None
        super().__init__(*args, unlabeled_dataset=unlabeled_dataset, data_collator=self.pool, **kwargs)
        self.labelled_sizes = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.labelled_sizes.append(len(inputs["labels"]))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def pool_sizes(self) -> list[int]:
        return [len(batch) for batch in self.pool.batches]

    def drawn_pool_rows(self) -> list[int]:
        """The pool rows drawn so far, in order."""
        return [row for batch in self.pool.batches for row in batch]


def test_every_step_takes_a_full_labelled_batch_and_a_pool_batch_cycled_and_reshuffled(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool
    pool = pool.select(range(12))

    def run(seed):
        args = make_args(
            tmp_path, per_device_train_batch_size=8, max_steps=-1, num_train_epochs=2, data_seed=seed, seed=seed
        )
        trainer = RecordingTrainer(model=make_student(), args=args, train_dataset=labelled, unlabeled_dataset=pool)
        trainer.train()
        return trainer

    trainer = run(0)
    # An epoch is an epoch of the 32 labelled examples: 2 epochs of batch 8 are 8 steps, each with 8 pool examples.
    assert trainer.state.global_step == 8
    assert trainer.labelled_sizes == trainer.pool_sizes() == [8] * 8
    rows = trainer.drawn_pool_rows()
    passes = [rows[i : i + 12] for i in range(0, 60, 12)]
    assert all(sorted(one) == list(range(12)) for one in passes), "every pass draws the whole pool once"
    assert len({tuple(one) for one in passes}) == 5, "the pool is reshuffled at every pass"
    assert run(0).drawn_pool_rows() == rows, "the order comes from the seed"
    assert run(1).drawn_pool_rows() != rows


def test_unlabeled_ratio_sets_the_pool_batch_and_losses_are_named(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool
    args = make_args(tmp_path, per_device_train_batch_size=8, max_steps=2, tcs_unlabeled_ratio=2.5)
    trainer = RecordingTrainer(model=make_student(), args=args, train_dataset=labelled, unlabeled_dataset=pool)
    trainer.train()
    assert (trainer.labelled_sizes, trainer.pool_sizes()) == ([8, 8], [20, 20])
    logged = trainer.state.log_history[0]
    assert {"ce_loss", "tcs_loss", "tcs_unlabeled_loss"} <= logged.keys()
    assert logged["tcs_unlabeled_loss"] > 0 and logged["tcs_unlabeled_loss"] != logged["tcs_loss"]


def test_the_pool_adds_its_weighted_coordinate_loss_to_the_labelled_loss(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool
    cs = CoordinateSystem.fit(column(labelled, "teacher_features"), num_components=16)

    def step_grads(**extra):
        args = make_args(tmp_path, per_device_train_batch_size=8, max_steps=1, max_grad_norm=0)  # raw gradients
        trainer = RecordingTrainer(
            model=make_student(), args=args, train_dataset=labelled, coordinate_system=cs, **extra
        )
        initial = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
        return trainer, initial, train_and_grads(trainer)[0]

    with_pool, initial, grads = step_grads(unlabeled_dataset=pool)
    _, _, labelled_grads = step_grads()
    # What the pool adds: the gradient of tcs_loss_weight x the coordinate loss of its batch, by hand.
    rows = with_pool.drawn_pool_rows()
    assert len(rows) == 8
    model = make_student()
    attach_tcs_head(model, 16)
    model.load_state_dict(initial)
    pool_rows = with_pool.unlabeled_dataset.with_format("torch")[rows]
    model(pixel_values=pool_rows["pixel_values"])
    targets = pool_rows["tcs_coordinates"] * cs.global_scale  # the default, global, target scaling
    loss = with_pool.args.tcs_loss_weight * coordinate_loss(
        student_coordinates(model), targets, num_dims=cs.feature_dim
    )
    loss.backward()
    expected = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert expected
    for name, grad in grads.items():
        if "tcs_gate" in name:
            continue
        # (The pool's term does not reach the classifier behind the coordinates.)
        added = expected.get(name, torch.zeros_like(grad))
        torch.testing.assert_close(grad - labelled_grads[name], added, atol=1e-5, rtol=1e-4, msg=name)


def test_gradient_accumulation_1x16_equals_2x8_with_a_pool(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool

    def grads(batch_size, accumulation, **extra):
        args = make_args(
            tmp_path, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation, max_steps=2
        )
        trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=labelled, **extra)
        return train_and_grads(trainer)

    one, two = grads(16, 1, unlabeled_dataset=pool), grads(8, 2, unlabeled_dataset=pool)
    without_pool = grads(16, 1)
    for step in range(2):
        for name in one[step]:
            torch.testing.assert_close(one[step][name], two[step][name], atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.allclose(
        one[0]["vit.embeddings.patch_embeddings.projection.weight"],
        without_pool[0]["vit.embeddings.patch_embeddings.projection.weight"],
    )


def test_resumed_run_with_a_pool_ends_like_an_uninterrupted_one(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool
    pool = pool.select(range(20))  # 6 steps x 8 = 48 draws: the resumed part crosses into a new pass

    def run(output, **extra):
        args = resumable_args(tmp_path, output)
        return RecordingTrainer(
            model=make_student(), args=args, train_dataset=labelled, unlabeled_dataset=pool, **extra
        )

    full = run("full")
    full.train()
    interrupted, resumed = interrupt_and_resume(run, tmp_path / "resumed")
    assert interrupted.drawn_pool_rows() + resumed.drawn_pool_rows() == full.drawn_pool_rows()
    assert_same_weights(full.model, resumed.model)


def test_coordinate_system_is_fitted_on_labelled_and_pool_features_unless_told_otherwise(
    tmp_path, labelled_and_pool, image_features
):
    labelled, pool = labelled_and_pool
    features = column(image_features, "teacher_features")
    both = TCSDistillationTrainer(
        model=make_student(), args=make_args(tmp_path), train_dataset=labelled, unlabeled_dataset=pool
    )
    reference = CoordinateSystem.fit(features, num_components=16)
    assert both.coordinate_system.num_examples == 64
    np.testing.assert_allclose(np.abs(both.coordinate_system.components), np.abs(reference.components), atol=1e-5)
    pool_column = column(both.unlabeled_dataset, "tcs_coordinates")
    np.testing.assert_allclose(pool_column, both.coordinate_system.project(features[32:]), atol=1e-5)
    assert set(both.unlabeled_dataset.column_names) == {"pixel_values", "tcs_coordinates"}, "no label column"

    only = TCSDistillationTrainer(
        model=make_student(),
        args=make_args(tmp_path, tcs_fit_on_unlabeled=False),
        train_dataset=labelled,
        unlabeled_dataset=pool,
    )
    assert only.coordinate_system.num_examples == 32
    np.testing.assert_allclose(only.coordinate_system.mean, features[:32].mean(axis=0), atol=1e-6)
    pool_column = column(only.unlabeled_dataset, "tcs_coordinates")
    np.testing.assert_allclose(pool_column, only.coordinate_system.project(features[32:]), atol=1e-5)


def test_the_trainer_runs_the_teacher_pass_on_the_pool_too(tmp_path, teacher_dirs, cifar10_sample):
    from transformers import ViTImageProcessor

    from hf_tcs import load_teacher

    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    images = cifar10_sample.select(range(48)).map(
        lambda batch: {"pixel_values": processor(images=batch["image"], return_tensors="np")["pixel_values"]},
        batched=True,
    )
    labelled, pool = images.select(range(16)), images.select(range(16, 48)).map(lambda _: {"label": -100})
    args = make_args(
        tmp_path, teacher_model_name_or_path=str(teacher_dirs["dino"]), max_steps=1, per_device_train_batch_size=8
    )
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=labelled, unlabeled_dataset=pool)
    features = load_teacher(teacher_dirs["dino"]).encode(images["image"])
    cs = trainer.coordinate_system
    assert cs.num_examples == 48 and cs.metadata["teacher"] == str(teacher_dirs["dino"])
    pool_column = column(trainer.unlabeled_dataset, "tcs_coordinates")
    np.testing.assert_allclose(pool_column, cs.project(features[16:]), atol=1e-4)
    trainer.train()
    assert "tcs_unlabeled_loss" in trainer.state.log_history[0]


def test_evaluation_is_unaffected_by_the_pool(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool
    cs = CoordinateSystem.fit(column(labelled, "teacher_features"), num_components=16)
    evaluation = cs.add_coordinates(labelled, keep_features=False)
    metrics = []
    for extra in ({"unlabeled_dataset": pool}, {}):
        trainer = TCSDistillationTrainer(
            model=make_student(),
            args=make_args(tmp_path),
            train_dataset=labelled,
            eval_dataset=evaluation,
            coordinate_system=cs,
            **extra,
        )
        trainer.evaluate()
        (logged,) = trainer.state.log_history
        metrics.append({k: v for k, v in logged.items() if "time" not in k and "per_second" not in k})
    assert metrics[0] == metrics[1] and "eval_tcs_unlabeled_loss" not in metrics[0]
    assert {"eval_ce_loss", "eval_tcs_loss", "eval_accuracy"} <= metrics[0].keys()


def test_bad_pools_get_clear_errors(tmp_path, labelled_and_pool):
    labelled, pool = labelled_and_pool

    def make(pool, **config):
        return TCSDistillationTrainer(
            model=make_student(), args=make_args(tmp_path, **config), train_dataset=labelled, unlabeled_dataset=pool
        )

    with pytest.raises(ValueError, match="unlabeled_dataset has labels in its 'label' column .*put the labelled"):
        make(pool.add_column("label", [-100] * 31 + [3]))
    with pytest.raises(ValueError, match="unlabeled_dataset is empty"):
        make(pool.select([]))
    with pytest.raises(ValueError, match="columns do not match.*missing \\['pixel_values'\\]"):
        make(pool.rename_column("pixel_values", "pixels"))
    with pytest.raises(ValueError, match="columns do not match.*extra \\['pixels'\\].*remove the extra columns"):
        make(pool.add_column("pixels", [0] * 32), remove_unused_columns=False)
    with pytest.raises(ValueError, match="tcs_loss_weight=0"):
        make(pool, tcs_loss_weight=0.0)
    with pytest.raises(
        ValueError, match="The unlabelled pool has neither a 'tcs_coordinates' nor a 'teacher_features'"
    ):
        make(pool.remove_columns("teacher_features"))
    other = CoordinateSystem.fit(column(pool, "teacher_features"), num_components=16)
    with pytest.raises(ValueError, match="pool has a 'tcs_coordinates' column, but the trainer fits"):
        make(other.add_coordinates(pool))
    with pytest.raises(ValueError, match="tcs_unlabeled_ratio=0"):
        make_args(tmp_path, tcs_unlabeled_ratio=0)
    # Labels -100 and None are what an unlabelled pool may carry; the pool is then used without that column.
    accepted = make(pool.add_column("label", [None] * 16 + [-100] * 16))
    assert accepted.unlabeled_dataset.column_names == ["pixel_values", "tcs_coordinates"]
