"""Publishing through the real client code paths, against the local Hub-compatible server (`local_hub`)."""

import json
import logging

import datasets
import helpers
import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard, HfApi, ModelCard
from safetensors import safe_open
from tiny_models import make_student
from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTImageProcessor

from hf_tcs import CoordinateSystem, load_teacher, precompute_teacher_features
from hf_tcs.hub import HubPublishingError, push_features_to_hub, push_student_to_hub

TOKEN = "hf_localTestTokenThatMustNeverBeWrittenAnywhere"


def train(tmp_path, dataset, **overrides):
    """`helpers.train` with the student's image processor, which a published student carries."""
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    return helpers.train(tmp_path, dataset, processing_class=processor, **overrides)


def logits(model, dataset) -> torch.Tensor:
    pixels = torch.as_tensor(dataset.with_format("numpy")[:8]["pixel_values"])
    model.eval()
    with torch.no_grad():
        return model(pixel_values=pixels).logits


def weight_names(path) -> set[str]:
    with safe_open(path, framework="pt") as file:
        return set(file.keys())


def test_push_to_hub_publishes_the_folded_student_card_and_coordinate_system(
    tmp_path, image_features, local_hub, caplog
):
    trainer = train(tmp_path, image_features, hub_model_id="user/tiny-tcs", hub_token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        trainer.push_to_hub(license="mit")

    files = local_hub.files("user/tiny-tcs")
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(files)
    assert {"tcs_spectrum.png", "tcs_active_coordinates.png", "tcs/coordinate_system.json"} <= set(files)
    assert not any(path.startswith("checkpoint-") for path in files)
    for path, content in files.items():
        assert TOKEN.encode() not in content, path
    assert TOKEN not in caplog.text

    # Read back by repo id, as any user would.
    student = AutoModelForImageClassification.from_pretrained("user/tiny-tcs")
    torch.testing.assert_close(logits(student, image_features), logits(trainer.model, image_features))
    assert AutoImageProcessor.from_pretrained("user/tiny-tcs").size == {"height": 32, "width": 32}
    card = ModelCard.load("user/tiny-tcs")
    assert card.data.license == "mit" and "hf_tcs" in card.data.tags
    coordinate_system = CoordinateSystem.from_pretrained("user/tiny-tcs", subfolder="tcs")
    np.testing.assert_array_equal(coordinate_system.components, trainer.coordinate_system.components)


def test_pushing_again_keeps_edits_made_on_the_hub(tmp_path, image_features, local_hub):
    trainer = train(tmp_path, image_features, hub_model_id="user/edited")
    trainer.push_to_hub()
    published = ModelCard.load("user/edited")
    published.data.license = "cc-by-4.0"
    published.text = published.text.replace("**Use:**", "Only for cats.")
    HfApi().upload_file(
        path_or_fileobj=str(published).encode(), path_in_repo="README.md", repo_id="user/edited", commit_message="edit"
    )

    longer = train(tmp_path, image_features, hub_model_id="user/edited", max_steps=8)  # a new generated section
    longer.push_to_hub(commit_message="Second push")
    card = ModelCard.load("user/edited")
    assert "Only for cats." in card.text and card.data.license == "cc-by-4.0"
    assert card.text.count("hf_tcs: start of the generated card") == 1
    assert "| 8 |" in card.text  # the training log of the second run reached step 8
    assert local_hub.commits("user/edited")[0].title == "Second push"


def test_every_save_pushes_folded_students_not_checkpoints(tmp_path, image_features, local_hub):
    trainer = train(
        tmp_path,
        image_features,
        push_to_hub=True,
        hub_model_id="user/every-save",
        hub_strategy="every_save",
        hub_always_push=True,
        save_strategy="steps",
        save_steps=2,
    )
    titles = [commit.title for commit in local_hub.commits("user/every-save")]
    assert "Training in progress, step 2" in titles and "Training in progress, step 4" in titles
    files = local_hub.files("user/every-save")
    assert "README.md" in files and "tcs/coordinate_system.json" in files
    assert not any("checkpoint" in path for path in files)
    (tmp_path / "pushed.safetensors").write_bytes(files["model.safetensors"])
    assert not any("projector" in name or "tcs_gate" in name for name in weight_names(tmp_path / "pushed.safetensors"))
    # The local checkpoint keeps the unfolded head, to resume from.
    assert any("projector" in name for name in weight_names(tmp_path / "out" / "checkpoint-4" / "model.safetensors"))
    student = AutoModelForImageClassification.from_pretrained("user/every-save")
    torch.testing.assert_close(logits(student, image_features), logits(trainer.model, image_features))

    # With push_to_hub=True a user's save_model pushes too, as with any Trainer.
    trainer.save_model()
    assert local_hub.commits("user/every-save")[0].title == "Model save"


@pytest.mark.parametrize(
    ("strategy", "checkpoints"),
    [("checkpoint", {"last-checkpoint": 4}), ("all_checkpoints", {"checkpoint-2": 2, "checkpoint-4": 4})],
)
def test_checkpoint_strategies_push_the_folded_student_and_resumable_checkpoints(
    tmp_path, image_features, local_hub, strategy, checkpoints
):
    repo = f"user/{strategy.replace('_', '-')}"
    trainer = train(
        tmp_path,
        image_features,
        push_to_hub=True,
        hub_model_id=repo,
        hub_strategy=strategy,
        hub_always_push=True,
        save_strategy="steps",
        save_steps=2,
    )
    files = local_hub.files(repo)
    assert {path.split("/")[0] for path in files if "/" in path} == {"tcs", *checkpoints}
    # At the root: the folded student, the files of the plain model class.
    (tmp_path / "root.safetensors").write_bytes(files["model.safetensors"])
    make_student().save_pretrained(tmp_path / "plain")
    assert weight_names(tmp_path / "root.safetensors") == weight_names(tmp_path / "plain" / "model.safetensors")
    student = AutoModelForImageClassification.from_pretrained(repo)
    torch.testing.assert_close(logits(student, image_features), logits(trainer.model, image_features))
    # In each checkpoint folder: the unfolded student, its optimizer and the state to resume from.
    for folder, step in checkpoints.items():
        assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= {
            path.removeprefix(f"{folder}/") for path in files if path.startswith(f"{folder}/")
        }
        assert json.loads(files[f"{folder}/trainer_state.json"])["global_step"] == step
        (tmp_path / f"{folder}.safetensors").write_bytes(files[f"{folder}/model.safetensors"])
        assert any("projector" in name for name in weight_names(tmp_path / f"{folder}.safetensors"))


def test_push_student_folder_merges_the_published_card(tmp_path, image_features, local_hub):
    trainer = train(tmp_path, image_features)
    folder = tmp_path / "student"
    trainer.save_model(str(folder))
    HfApi().create_repo("user/folder")
    HfApi().upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n\nNotes written on the Hub.\n",
        path_in_repo="README.md",
        repo_id="user/folder",
    )
    push_student_to_hub(folder, "user/folder")
    card = ModelCard.load("user/folder")
    assert "Notes written on the Hub." in card.text and "How it was distilled" in card.text
    assert card.data.license == "mit"
    student = AutoModelForImageClassification.from_pretrained("user/folder")
    torch.testing.assert_close(logits(student, image_features), logits(trainer.model, image_features))
    with pytest.raises(ValueError, match="no config.json"):
        push_student_to_hub(tmp_path, "user/folder")


def test_a_failed_push_says_what_failed_and_leaves_the_output_intact(tmp_path, image_features, local_hub):
    trainer = train(tmp_path, image_features, hub_model_id="user/down")
    trainer.save_model()
    out = tmp_path / "out"
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file() and "checkpoint" not in str(path)}
    local_hub.close()
    with pytest.raises(HubPublishingError, match="user/down"):
        trainer.push_to_hub()
    after = {path: path.read_bytes() for path in out.rglob("*") if path.is_file() and "checkpoint" not in str(path)}
    assert after.keys() == before.keys()
    assert AutoModelForImageClassification.from_pretrained(out).config.num_labels == 10
    with pytest.raises(HubPublishingError, match="create the repo"):
        push_student_to_hub(out, "user/down")


def test_push_features_to_hub_round_trip(banking77_sample, teacher_dirs, local_hub):
    teacher = load_teacher(teacher_dirs["minilm"])
    splits = banking77_sample.train_test_split(test_size=0.25, seed=0)
    splits = precompute_teacher_features(splits, teacher)
    coordinate_system = CoordinateSystem.fit(splits["train"], num_components=8, metadata=teacher.to_dict())

    push_features_to_hub(splits, "user/banking77-minilm", coordinate_system=coordinate_system, teacher=teacher)

    loaded = datasets.load_dataset("user/banking77-minilm")
    for split in ("train", "test"):
        assert loaded[split]["text"][:] == splits[split]["text"][:]
        np.testing.assert_array_equal(
            np.asarray(loaded[split].with_format("numpy")[:]["teacher_features"]),
            np.asarray(splits[split].with_format("numpy")[:]["teacher_features"]),
        )
    card = DatasetCard.load("user/banking77-minilm", repo_type="dataset")
    assert {"hf_tcs", "teacher-features", "teacher-minilm"} <= set(card.data.tags)
    assert card.data.distillation_teacher == "minilm"
    assert splits["train"]._fingerprint in card.text and splits["test"]._fingerprint in card.text
    published = CoordinateSystem.from_pretrained("user/banking77-minilm", subfolder="tcs", repo_type="dataset")
    np.testing.assert_array_equal(published.components, coordinate_system.components)

    # The feature column carries its teacher: no `teacher=` needed.
    push_features_to_hub(splits["test"], "user/from-the-column")
    card = DatasetCard.load("user/from-the-column", repo_type="dataset")
    assert card.data.distillation_teacher == "minilm" and teacher.fingerprint in card.text
    anonymous = datasets.Dataset.from_dict(splits["test"].to_dict())  # plain lists: the provenance is gone
    with pytest.raises(ValueError, match="records the teacher"):
        push_features_to_hub(anonymous, "user/anonymous")
    with pytest.raises(ValueError, match="no 'teacher_features' column"):
        push_features_to_hub(banking77_sample, "user/raw", teacher=teacher)
