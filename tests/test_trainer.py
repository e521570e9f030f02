import dataclasses
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
from helpers import (
    assert_same_weights,
    column,
    interrupt_and_resume,
    losses_by_hand,
    make_args,
    resumable_args,
    scaled_targets,
    train_and_grads,
)
from tiny_models import make_student
from transformers import (
    AutoModelForImageClassification,
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
    ViTImageProcessor,
)

from hf_tcs import CoordinateSystem, TCSConfig, TCSDistillationTrainer, load_teacher, precompute_teacher_features
from hf_tcs.student import get_tcs_head


def test_zero_weight_trains_exactly_like_a_plain_trainer(tmp_path, image_features):
    plain_data = image_features.remove_columns("teacher_features")
    plain = Trainer(
        model=make_student(),
        args=make_args(tmp_path, TrainingArguments, output_dir=str(tmp_path / "plain")),
        train_dataset=plain_data,
    )
    plain.train()
    tcs = TCSDistillationTrainer(
        model=make_student(), args=make_args(tmp_path, tcs_loss_weight=0.0), train_dataset=plain_data
    )
    tcs.train()
    assert get_tcs_head(tcs.model) is None
    for (name, a), (_, b) in zip(plain.model.state_dict().items(), tcs.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_gradient_accumulation_1x16_equals_2x8(tmp_path, image_features):
    def grads(batch_size, accumulation):
        args = make_args(
            tmp_path,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            tcs_selection_strategy="steps",
            tcs_selection_steps=10,
        )
        return train_and_grads(TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features))

    one, two = grads(16, 1), grads(8, 2)
    assert one[0].keys() == two[0].keys() and any("tcs_gate" in name for name in one[0])
    for name in one[0]:
        torch.testing.assert_close(one[0][name], two[0][name], atol=1e-6, rtol=1e-5, msg=name)


def test_coordinate_column_survives_default_arguments_and_loss_is_logged(tmp_path, image_features):
    trainer = TCSDistillationTrainer(model=make_student(), args=make_args(tmp_path), train_dataset=image_features)
    assert trainer.args.remove_unused_columns
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) == {"pixel_values", "labels", "tcs_coordinates"}
    assert batch["tcs_coordinates"].shape == (16, 16) and batch["tcs_coordinates"].dtype == torch.float32
    trainer.train()
    logged = trainer.state.log_history[0]
    assert {"ce_loss", "tcs_loss", "tcs_active_coordinates"} <= logged.keys()
    assert logged["tcs_active_coordinates"] == 16


def test_the_coordinate_column_is_the_projection_of_the_teacher_features(tmp_path, image_features):
    trainer = TCSDistillationTrainer(model=make_student(), args=make_args(tmp_path), train_dataset=image_features)
    cs = trainer.coordinate_system
    assert cs.num_components == 16 and cs.num_examples == 64 and cs.feature_dim == 32
    expected = cs.project(column(image_features, "teacher_features"))
    np.testing.assert_allclose(column(trainer.train_dataset, "tcs_coordinates"), expected, atol=1e-5)


def target_scale(scaling: str, coordinate_system) -> np.ndarray | float:
    """What `tcs_target_scaling` multiplies the coordinates by: the documented meaning of each value."""
    return {
        "global": coordinate_system.global_scale,  # one scalar: mean variance 1 over all D teacher components
        "standardize": 1 / np.sqrt(coordinate_system.eigenvalues),  # each coordinate by its own standard deviation
        "none": 1.0,
    }[scaling]


@pytest.mark.parametrize("scaling", ["global", "standardize", "none"])
def test_the_loss_is_cross_entropy_plus_the_coordinate_loss_of_the_scaled_targets(tmp_path, image_features, scaling):
    # One step over all 64 examples: the logged losses are those of the initial student on the whole set.
    args = make_args(tmp_path, max_steps=1, per_device_train_batch_size=64, tcs_target_scaling=scaling)
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features)
    cs = trainer.coordinate_system
    assert cs.global_scale != pytest.approx(1.0, rel=0.1), "the scalings must differ for this test to tell them apart"
    logits, ce, tcs = losses_by_hand(trainer, target_scale(scaling, cs), num_dims=cs.feature_dim)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(64)])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model.eval(), batch)
    torch.testing.assert_close(loss, ce + args.tcs_loss_weight * tcs, rtol=1e-5, atol=1e-6)
    trainer.train()
    (logged, _) = trainer.state.log_history
    assert logged["tcs_loss"] == pytest.approx(float(tcs), rel=1e-5)
    assert logged["ce_loss"] == pytest.approx(float(ce), rel=1e-5)
    assert logged["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_a_coordinate_column_alone_is_scaled_by_its_own_variances(tmp_path, image_features):
    features = column(image_features, "teacher_features")
    coordinates_only = CoordinateSystem.fit(features, num_components=8).add_coordinates(
        image_features, keep_features=False
    )
    args = make_args(tmp_path, max_steps=1, per_device_train_batch_size=64)
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=coordinates_only)
    assert trainer.coordinate_system is None and trainer.tcs_head.num_coordinates == 8
    # Without a coordinate system: one scale from the column's own variances, and D is the column's width.
    variances = column(coordinates_only, "tcs_coordinates").astype(np.float64).var(axis=0, ddof=1)
    _, _, tcs = losses_by_hand(trainer, 1 / np.sqrt(variances.mean()), num_dims=8)
    trainer.train()
    assert trainer.state.log_history[0]["tcs_loss"] == pytest.approx(float(tcs), rel=1e-5)


def test_non_finite_or_unscalable_coordinate_columns_are_refused(tmp_path, image_features):
    features = column(image_features, "teacher_features")
    coordinates = CoordinateSystem.fit(features, num_components=8).add_coordinates(image_features, keep_features=False)
    values = column(coordinates, "tcs_coordinates")

    def with_column(values: np.ndarray) -> datasets.Dataset:
        return coordinates.remove_columns("tcs_coordinates").add_column("tcs_coordinates", values.tolist())

    broken = values.copy()
    broken[[3, 40], 2] = [np.nan, np.inf]
    with pytest.raises(
        ValueError, match=r"2 rows of the training set's 'tcs_coordinates' column .* \(rows \[3, 40\]\)"
    ):
        TCSDistillationTrainer(model=make_student(), args=make_args(tmp_path), train_dataset=with_column(broken))
    constant = np.ones_like(values)
    for dataset in (with_column(constant), coordinates.select([0])):
        with pytest.raises(ValueError, match="zero or undefined variance.*tcs_target_scaling='none'"):
            TCSDistillationTrainer(model=make_student(), args=make_args(tmp_path), train_dataset=dataset)


def test_a_student_with_nan_weights_is_not_saved(tmp_path, image_features):
    trainer = TCSDistillationTrainer(model=make_student(), args=make_args(tmp_path), train_dataset=image_features)
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="student's weights hold NaN or inf .*not saved: training diverged"):
        trainer.save_model(str(tmp_path / "student"))
    assert not (tmp_path / "student" / "model.safetensors").exists()


def test_unlabelled_examples_carry_the_coordinate_loss_only(tmp_path, image_features):
    labels = [None if i % 2 else label for i, label in enumerate(image_features["label"])]
    mixed = image_features.remove_columns("label").add_column("label", labels)
    args = make_args(tmp_path, max_steps=1, per_device_train_batch_size=64)
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=mixed)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).sum() == 32 and (batch["labels"] >= 0).sum() == 32
    cs = trainer.coordinate_system
    logits, _, tcs = losses_by_hand(trainer, cs.global_scale, num_dims=cs.feature_dim)
    labelled = torch.arange(64) % 2 == 0
    ce = torch.nn.functional.cross_entropy(logits[labelled], torch.tensor(image_features["label"])[labelled])
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["ce_loss"] == pytest.approx(float(ce), rel=1e-5), "cross-entropy over the labelled half only"
    assert logged["tcs_loss"] == pytest.approx(float(tcs), rel=1e-5), "the coordinate loss over every example"


def test_optional_lsh_loss_is_added_and_logged(tmp_path, image_features):
    from hf_tcs.losses import lsh_bias, lsh_loss, lsh_projection

    args = make_args(
        tmp_path,
        max_steps=1,
        per_device_train_batch_size=64,
        tcs_lsh_weight=0.5,
        tcs_lsh_bits=32,
        remove_unused_columns=False,
    )
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features)
    cs = trainer.coordinate_system
    _, ce, tcs = losses_by_hand(trainer, cs.global_scale, num_dims=cs.feature_dim)
    targets = scaled_targets(trainer, cs.global_scale)
    # 32 hyperplanes drawn from the run's seed (the same on every process), centred on the training set's targets
    projection = lsh_projection(16, 32, seed=args.seed)
    expected = lsh_loss(trainer.tcs_head.last_coordinates, targets, projection, lsh_bias(targets, projection))
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["lsh_loss"] == pytest.approx(float(expected), rel=1e-5)
    total = ce + args.tcs_loss_weight * tcs + args.tcs_lsh_weight * expected
    assert logged["loss"] == pytest.approx(float(total), rel=1e-5)
    with pytest.raises(ValueError, match="tcs_lsh_bits"):
        make_args(tmp_path, tcs_lsh_bits=0)


def test_tailoring_drops_coordinates_on_schedule_down_to_the_floor(tmp_path, image_features):
    args = make_args(
        tmp_path,
        max_steps=8,
        per_device_train_batch_size=8,
        tcs_selection_strategy="steps",
        tcs_selection_steps=2,
        tcs_selection_rounds=3,
        tcs_drop_ratio=0.5,
        tcs_min_components=5,
    )
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features)
    trainer.train()
    active = [log["tcs_active_coordinates"] for log in trainer.state.log_history if "loss" in log]
    # 16 -> 8 (step 2) -> 5 (step 4, floor) -> 5 (step 6, floor); nothing after the 3 rounds
    assert active == [16, 8, 8, 5, 5, 5, 5, 5]
    head = get_tcs_head(trainer.model)
    assert head.num_active == 5 and float(head.tcs_gate.detach().sum()) == 16.0, "the gate must never be trained"


def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, image_features):
    def run(output, **extra):
        args = resumable_args(
            tmp_path,
            output,
            tcs_selection_strategy="steps",
            tcs_selection_steps=2,
            tcs_selection_rounds=2,
            tcs_drop_ratio=0.25,
            tcs_min_components=4,
        )
        return TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features, **extra)

    full = run("full")
    full.train()
    interrupted, resumed = interrupt_and_resume(run, tmp_path / "resumed")
    assert get_tcs_head(interrupted.model).num_active == 12

    full_head, resumed_head = get_tcs_head(full.model), get_tcs_head(resumed.model)
    assert full_head.num_active == 9
    assert torch.equal(full_head.mask, resumed_head.mask)
    assert_same_weights(full.model, resumed.model)


def test_save_model_writes_a_folded_student_that_loads_without_hf_tcs(tmp_path, image_features):
    args = make_args(tmp_path, tcs_selection_strategy="steps", tcs_selection_steps=2, tcs_selection_rounds=1)
    trainer = TCSDistillationTrainer(
        model=make_student(),
        args=args,
        train_dataset=image_features,
        processing_class=ViTImageProcessor(size={"height": 32, "width": 32}),
    )
    trainer.train()
    out = tmp_path / "student"
    trainer.save_model(str(out))
    assert (out / "preprocessor_config.json").exists() and (out / "tcs" / "coordinate_system.json").exists()
    assert get_tcs_head(trainer.model) is not None, "saving must not fold the model being trained"
    assert CoordinateSystem.from_pretrained(out / "tcs").num_components == 16

    pixels = torch.as_tensor(np.asarray(image_features.with_format("numpy")[:8]["pixel_values"]))
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(pixel_values=pixels).logits
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    script = f"""
import sys
sys.modules["hf_tcs"] = None  # loading must not need hf_tcs
import numpy as np, torch
from transformers import AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained({str(out)!r}).eval()
assert type(model).__name__ == "ViTForImageClassification"
with torch.no_grad():
    logits = model(pixel_values=torch.as_tensor(np.load({str(tmp_path / "pixels.npy")!r}))).logits
np.save({str(tmp_path / "logits.npy")!r}, logits.numpy())
"""
    subprocess.run([sys.executable, "-c", script], check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected.numpy(), atol=1e-5)
    reloaded = AutoModelForImageClassification.from_pretrained(out)
    assert set(reloaded.state_dict()) == set(make_student().state_dict())


def test_trainer_runs_the_teacher_pass_itself_and_keeps_coordinates_of_the_clean_view(
    tmp_path, teacher_dirs, cifar10_sample
):
    images = cifar10_sample.select(range(32))
    processor = ViTImageProcessor(size={"height": 32, "width": 32})

    def augment(batch):  # the student sees flipped images; the teacher saw the clean ones
        flipped = [image.transpose(0) for image in batch.pop("image")]
        batch["pixel_values"] = list(processor(images=flipped, return_tensors="pt")["pixel_values"])
        return batch

    args = make_args(
        tmp_path, teacher_model_name_or_path=str(teacher_dirs["dino"]), max_steps=2, remove_unused_columns=False
    )
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=images)
    assert "teacher_features" not in trainer.train_dataset.column_names
    assert trainer.coordinate_system.metadata["teacher"] == str(teacher_dirs["dino"])  # provenance
    clean = trainer.train_dataset.with_format("numpy")[:]["tcs_coordinates"]
    trainer.train_dataset = trainer.train_dataset.with_transform(augment)
    batch = next(iter(trainer.get_train_dataloader()))
    index = {tuple(row.round(5)) for row in np.asarray(clean)}
    assert all(tuple(row.round(5)) in index for row in batch["tcs_coordinates"].numpy())
    trainer.train()
    steps = [log for log in trainer.state.log_history if "loss" in log]
    assert len(steps) == 2 and all(log["tcs_loss"] > 0 for log in steps), "the augmented views trained on coordinates"


def test_text_student_with_padding_collator(tmp_path, teacher_dirs, banking77_sample):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dirs["minilm"])
    texts = banking77_sample.select(range(32)).class_encode_column("category").rename_column("category", "label")
    texts = precompute_teacher_features(texts, load_teacher(teacher_dirs["minilm"]))
    texts = texts.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=32), batched=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=4,  # the 4 intents of these 32 texts: a random student's accuracy is then not 0
    )
    trainer = TCSDistillationTrainer(
        model=BertForSequenceClassification(config),
        args=make_args(tmp_path, max_steps=2, tcs_num_components=0.9),
        train_dataset=texts,
        eval_dataset=texts.remove_columns("teacher_features"),
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    # The accuracy reported is the student's on the eval set (its own padded forward pass here).
    model = trainer.model.eval()
    inputs = tokenizer(list(texts["text"]), truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    accuracy = (logits.argmax(-1) == torch.tensor(texts["label"])).double().mean().item()
    assert metrics["eval_accuracy"] == pytest.approx(accuracy) and 0 < accuracy < 1
    logged = trainer.state.log_history[-1]
    assert "eval_ce_loss" in logged and "eval_tcs_loss" not in logged  # the eval set has no coordinates


def test_bad_input_gets_clear_errors(tmp_path, image_features):
    features = np.asarray(image_features.with_format("numpy")[:]["teacher_features"])
    int_labels = image_features.cast_column("label", datasets.Value("int64"))
    with pytest.raises(ValueError, match="outside the student's label set 0..9"):
        TCSDistillationTrainer(
            model=make_student(), args=make_args(tmp_path), train_dataset=int_labels.map(lambda _: {"label": 12})
        )
    with pytest.raises(ValueError, match="eval_dataset has labels \\[10\\]"):
        TCSDistillationTrainer(
            model=make_student(),
            args=make_args(tmp_path),
            train_dataset=image_features,
            eval_dataset=int_labels.map(lambda _: {"label": 10}),
        )
    four = CoordinateSystem.fit(features, num_components=4)
    with_four = four.add_coordinates(image_features)
    with pytest.raises(ValueError, match="has 4 coordinates but the coordinate system keeps 6"):
        TCSDistillationTrainer(
            model=make_student(),
            args=make_args(tmp_path),
            train_dataset=with_four,
            coordinate_system=four.with_num_components(6),
        )
    with pytest.raises(ValueError, match="neither a 'tcs_coordinates' nor a 'teacher_features' column"):
        TCSDistillationTrainer(
            model=make_student(),
            args=make_args(tmp_path),
            train_dataset=image_features.remove_columns("teacher_features"),
        )
    with pytest.raises(ValueError, match="tcs_target_scaling"):
        make_args(tmp_path, tcs_target_scaling="whiten")


def test_launched_processes_that_would_each_train_alone_are_refused(tmp_path, image_features, monkeypatch):
    args = make_args(tmp_path)
    assert args.world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # what `accelerate launch` sets, here for training arguments of one process
    with pytest.raises(ValueError, match="2 processes were launched.*pass `--use_cpu`"):
        TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features)


def test_plain_training_arguments_are_upgraded_with_the_tcs_defaults(tmp_path, image_features):
    token = "hf_userTokenKeptThroughTheUpgrade"
    args = make_args(
        tmp_path, TrainingArguments, learning_rate=3e-4, warmup_steps=1, hub_token=token, per_device_train_batch_size=8
    )
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features)
    upgraded = trainer.args
    assert isinstance(upgraded, TCSConfig)
    assert (upgraded.learning_rate, upgraded.warmup_steps, upgraded.per_device_train_batch_size) == (3e-4, 1, 8)
    assert upgraded.hub_token == token and upgraded.output_dir == args.output_dir
    defaults = {field.name: field.default for field in dataclasses.fields(TCSConfig) if field.name.startswith("tcs_")}
    assert {name: getattr(upgraded, name) for name in defaults} == defaults
    # The defaults are in force: a head on the coordinates that explain 95 % of the variance, weighted 4 x.
    cs = trainer.coordinate_system
    assert cs.total_explained_variance >= 0.95 > cs.with_num_components(cs.num_components - 1).total_explained_variance
    assert trainer.tcs_head.num_coordinates == cs.num_components
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["loss"] == pytest.approx(logged["ce_loss"] + defaults["tcs_loss_weight"] * logged["tcs_loss"])


def test_a_dict_of_eval_sets_evaluates_each_under_its_name(tmp_path, image_features):
    sets = {"first": image_features.select(range(24)), "second": image_features.select(range(24, 64))}
    args = make_args(tmp_path, max_steps=2, eval_strategy="steps", eval_steps=2)
    trainer = TCSDistillationTrainer(model=make_student(), args=args, train_dataset=image_features, eval_dataset=sets)
    trainer.train()
    model = trainer.model.eval()
    for name, dataset in sets.items():
        (logged,) = [log for log in trainer.state.log_history if f"eval_{name}_accuracy" in log]
        data = dataset.with_format("torch")[:]
        with torch.no_grad():
            predictions = model(pixel_values=data["pixel_values"]).logits.argmax(-1)
        accuracy = (predictions == data["label"]).double().mean().item()
        assert logged["step"] == 2 and logged[f"eval_{name}_accuracy"] == pytest.approx(accuracy)


def test_the_loss_terms_of_each_named_eval_set_carry_its_name(tmp_path, image_features):
    sets = {"first": image_features.select(range(24)), "second": image_features.select(range(24, 64))}
    trainer = TCSDistillationTrainer(
        model=make_student(), args=make_args(tmp_path), train_dataset=image_features, eval_dataset=sets
    )
    trainer.evaluate()
    for name, logged in zip(sets, trainer.state.log_history, strict=True):
        assert f"eval_{name}_ce_loss" in logged and "eval_ce_loss" not in logged
