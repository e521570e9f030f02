"""The teacher's identity travels with its features: into every coordinate system, coordinate column and card."""

import json

import datasets
import pytest
from helpers import make_args
from huggingface_hub import ModelCard
from test_cli import CIFAR10, VIT_STUDENT, main, training_args
from tiny_models import make_student

from hf_tcs import CoordinateSystem, TCSConfig, TCSDistillationTrainer, load_teacher, precompute_teacher_features
from hf_tcs.columns import column_provenance
from hf_tcs.teachers import load_configured_teacher

HUB_ID = "facebook/dino-vits16"


@pytest.fixture(scope="module")
def dino_features(teacher_dirs, cifar10_sample):
    teacher = load_teacher(teacher_dirs["dino"], hub_id=HUB_ID, revision="abc123")
    return teacher, precompute_teacher_features(cifar10_sample.select(range(40)), teacher)


def test_the_feature_column_carries_its_teacher_through_datasets_transforms(dino_features, tmp_path):
    teacher, dataset = dino_features
    recorded = column_provenance(dataset, "teacher_features")
    assert recorded["teacher"] == HUB_ID and recorded["teacher_revision"] == "abc123"
    assert recorded["pooling"] == teacher.pooling and recorded["teacher_fingerprint"] == teacher.fingerprint
    transformed = (
        dataset.map(lambda example: {"n": 1})
        .select(range(30))
        .shuffle(seed=0)
        .filter(lambda example: example["label"] < 9)
        .remove_columns("image")
    )
    splits = datasets.DatasetDict({"train": transformed, "test": dataset.select(range(30, 40))})
    splits.save_to_disk(tmp_path / "saved")
    for split in datasets.load_from_disk(tmp_path / "saved").values():
        assert column_provenance(split, "teacher_features") == recorded
    assert column_provenance(datasets.concatenate_datasets([transformed, transformed]), "teacher_features") == recorded


def test_the_quickstart_path_records_the_teacher_in_the_coordinate_system_and_the_card(dino_features, tmp_path):
    teacher, dataset = dino_features
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    dataset = dataset.map(
        lambda batch: {"pixel_values": processor(images=batch["image"], return_tensors="np")["pixel_values"]},
        batched=True,
        remove_columns=["image"],
    )
    trainer = TCSDistillationTrainer(
        model=make_student(), args=make_args(tmp_path, max_steps=1), train_dataset=dataset
    )
    metadata = trainer.coordinate_system.metadata
    assert metadata["teacher"] == HUB_ID and metadata["teacher_fingerprint"] == teacher.fingerprint
    # The coordinate column records the system that made it, with its teacher.
    recorded = column_provenance(trainer.train_dataset, "tcs_coordinates")
    assert recorded["coordinate_system"] == trainer.coordinate_system.fingerprint and recorded["teacher"] == HUB_ID
    trainer.train()
    trainer.save_model(str(tmp_path / "student"))
    card = ModelCard.load(tmp_path / "student" / "README.md")
    assert card.data.distillation_teacher == HUB_ID and card.data.distillation_teacher_revision == "abc123"
    assert "not recorded" not in card.text and teacher.fingerprint in card.text


def test_a_coordinate_column_alone_still_names_its_teacher_in_the_card(dino_features, tmp_path):
    teacher, dataset = dino_features
    coordinates = CoordinateSystem.fit(dataset, num_components=8).add_coordinates(dataset, keep_features=False)
    trainer = TCSDistillationTrainer(
        model=make_student(), args=make_args(tmp_path), train_dataset=coordinates.remove_columns("image")
    )
    assert trainer.coordinate_system is None and trainer.teacher_info["teacher"] == HUB_ID


def test_a_local_copy_of_a_hub_model_is_named_by_the_hub_id_given(teacher_dirs, tmp_path):
    folder = str(teacher_dirs["dino"])
    config = TCSConfig(output_dir=str(tmp_path), teacher_model_name_or_path=folder, teacher_hub_id=HUB_ID)
    assert load_configured_teacher(config.teacher_model_name_or_path, config).to_dict()["teacher"] == HUB_ID
    unnamed = load_teacher(teacher_dirs["dino"])
    assert unnamed.to_dict()["teacher"] == str(teacher_dirs["dino"])
    with pytest.raises(ValueError, match="hub_id='not a repo id' is not a Hub repo id"):
        load_teacher(teacher_dirs["dino"], hub_id="not a repo id")

    out = tmp_path / "features"
    argv = [
        *("precompute", "--train_file", CIFAR10, "--max_train_samples", "16", "--tcs_num_components", "4"),
        *("--teacher_model_name_or_path", str(teacher_dirs["dino"]), "--teacher_hub_id", HUB_ID),
        *("--output_dir", str(out), "--use_cpu", "--log_level", "warning"),
    ]
    assert main(argv) == 0
    saved = json.loads((out / "tcs" / "coordinate_system.json").read_text())["metadata"]
    assert saved["teacher"] == HUB_ID and saved["teacher_path"] == folder
    assert column_provenance(datasets.load_from_disk(out)["train"], "tcs_coordinates")["teacher"] == HUB_ID
    # Distil from it offline: the student (an architecture) takes the processor of the local copy, not the Hub's.
    student = tmp_path / "student"
    argv = ["distill", "--dataset_name", str(out), "--student_model_name_or_path", "vit"]
    assert main([*argv, "--student_config", json.dumps(VIT_STUDENT), *training_args(student)]) == 0
    card = ModelCard.load(student / "README.md")
    assert card.data.distillation_teacher == HUB_ID and "a local folder" not in card.text
