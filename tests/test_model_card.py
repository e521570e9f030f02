"""Model cards of distilled students: metadata, body, plots, updates of an existing README, and failure handling."""

import logging
import re

import helpers
import pytest
import torch
from huggingface_hub import ModelCard
from tiny_models import NUM_LABELS, make_student
from transformers import AutoModelForImageClassification, TimmWrapperConfig, TimmWrapperForImageClassification

from hf_tcs import load_teacher
from hf_tcs.model_card import GENERATED_START, TCSModelCardData

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train(tmp_path, dataset, **overrides):
    """`helpers.train` for 6 steps, evaluated every 3, with two tailoring steps: a card with curves to draw."""
    settings = {"max_steps": 6, "eval_steps": 3, "tcs_selection_rounds": 2}
    return helpers.train(tmp_path, dataset, **{**settings, **overrides})


def test_card_metadata_body_and_plots(tmp_path, image_features, teacher_dirs):
    trainer = train(tmp_path, image_features, teacher=load_teacher(teacher_dirs["dino"]))
    trainer.save_model()
    out = tmp_path / "out"
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-classification"
    assert {"hf_tcs", "knowledge-distillation", "tcs", "teacher-dino"} <= set(data.tags)
    assert data.distillation_teacher == "dino"  # a local teacher is named by its folder, never by its path
    assert str(tmp_path) not in card.content
    assert data.base_model is None  # built from a config; the teacher is never the base model
    final_accuracy = [entry["eval_accuracy"] for entry in trainer.state.log_history if "eval_accuracy" in entry][-1]
    [result] = data.eval_results
    assert (result.task_type, result.metric_type) == ("image-classification", "accuracy")
    assert result.metric_value == pytest.approx(final_accuracy)

    active = trainer.tcs_head.num_active
    assert active < 16
    assert "k = 16 of D = 32 principal components" in card.text
    assert f"shrank from 16 to {active} active coordinates" in card.text
    assert "| tcs_selection_strategy | steps |" in card.text
    assert "| output_dir |" not in card.text
    log_rows = [line for line in card.text.splitlines() if line.startswith("| 0.") or line.startswith("| 1.")]
    assert len(log_rows) == 6  # one row per logged step
    assert "\n\n\n" not in card.text
    for plot in ("tcs_spectrum.png", "tcs_active_coordinates.png"):
        assert (out / plot).read_bytes().startswith(PNG_MAGIC)
        assert f"]({plot})" in card.text


def test_base_model_is_the_students_checkpoint_and_user_fields_are_kept(tmp_path, image_features):
    student = make_student()
    student.config._name_or_path = "google/vit-base-patch16-224"
    trainer = train(tmp_path, image_features, model=student, max_steps=2)
    trainer.create_model_card(license="apache-2.0", tags="my-tag", baseline_metrics={"eval_accuracy": 0.125})
    trainer.save_model()  # a later save keeps what create_model_card was told
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.base_model == "google/vit-base-patch16-224"
    assert card.data.license == "apache-2.0"
    assert "my-tag" in card.data.tags
    assert "| accuracy |" in card.text and "| 0.1250 |" in card.text
    with pytest.raises(TypeError, match="Unknown model card fields"):
        trainer.create_model_card(teacher_name="x")


def test_existing_readme_is_updated_not_overwritten(tmp_path, image_features):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("---\nlicense: mit\ntags:\n- mine\n---\n\n# My model\n\nMy own notes.\n")
    trainer = train(tmp_path, image_features, max_steps=2)
    trainer.save_model()
    trainer.save_model()
    text = (out / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.license == "mit"
    assert {"mine", "hf_tcs"} <= set(card.data.tags)
    assert "My own notes." in text
    assert text.count(GENERATED_START) == 1

    edited = text.replace("My own notes.", "Only for cats.")
    (out / "README.md").write_text(edited)
    trainer.save_model()
    assert "Only for cats." in (out / "README.md").read_text()


def test_a_card_failure_warns_and_never_stops_saving(tmp_path, image_features, monkeypatch, caplog):
    trainer = train(tmp_path, image_features, max_steps=2)

    def broken(*args, **kwargs):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(TCSModelCardData, "from_trainer", broken)
    with caplog.at_level(logging.WARNING, logger="hf_tcs.model_card"):
        trainer.save_model()
    assert "template exploded" in caplog.text
    assert AutoModelForImageClassification.from_pretrained(tmp_path / "out").config.num_labels == NUM_LABELS


def test_the_hub_token_is_never_saved(tmp_path, image_features):
    token = "hf_thisIsNotARealTokenButSecret"
    trainer = train(tmp_path, image_features, max_steps=2, hub_token=token, save_strategy="steps", save_steps=2)
    trainer.save_model()
    assert trainer.args.hub_token == token  # still usable for pushing
    files = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in files)
    for path in files:
        assert token.encode() not in path.read_bytes(), path


def test_timm_student_is_published_in_timm_format(tmp_path, image_features):
    import timm

    torch.manual_seed(0)
    config = TimmWrapperConfig(
        architecture="vit_tiny_patch16_224",
        num_labels=NUM_LABELS,
        model_args={"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2},
    )
    trainer = train(tmp_path, image_features, model=TimmWrapperForImageClassification(config), max_steps=2)
    trainer.save_model()
    out = tmp_path / "out"
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "timm"
    assert 'timm.create_model("hf-hub:' in card.text

    pixels = torch.as_tensor(image_features.with_format("numpy")[:4]["pixel_values"])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(pixel_values=pixels).logits
        from_timm = timm.create_model(f"local-dir:{out}", pretrained=True).eval()(pixels)
        from_transformers = AutoModelForImageClassification.from_pretrained(out).eval()(pixel_values=pixels).logits
    torch.testing.assert_close(from_timm, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_transformers, expected, atol=1e-5, rtol=1e-5)


def test_card_data_renders_without_a_trainer():
    data = TCSModelCardData.from_fields(
        model_name="tiny", dataset="user/data", finetuned_from="org/student", license="mit", tasks="ignored"
    )
    data.pipeline_tag, data.eval_metrics = "text-classification", {"accuracy": 0.5, "loss": 1.0}
    data.teacher_info = {"teacher": "sentence-transformers/all-MiniLM-L6-v2", "teacher_revision": "abc123"}
    card = data.render()
    assert card.data.datasets == ["user/data"] and card.data.base_model == "org/student"
    assert card.data.distillation_teacher_revision == "abc123"
    assert "teacher-minilm" in card.data.tags
    [result] = card.data.eval_results
    assert (result.dataset_type, result.metric_value) == ("user/data", 0.5)  # loss is no model-index metric
    assert 'pipeline("text-classification", model="<your-namespace>/tiny")' in card.text


@pytest.mark.parametrize(
    ("teacher", "shown", "link", "local"),
    [
        ("facebook/dinov2-small", "facebook/dinov2-small", "facebook/dinov2-small", False),
        (
            "hf-hub:timm/vit_small_patch16_224.dino",
            "timm/vit_small_patch16_224.dino",
            "timm/vit_small_patch16_224.dino",
            False,
        ),
        ("/gone/teachers/dino", "dino", None, True),  # a folder of a machine the card is not written on
        ("local-dir:/gone/teachers/dino", "dino", None, True),
        ("vit_small_patch16_224.dino", "vit_small_patch16_224.dino", None, False),  # a timm registry name
    ],
)
def test_the_card_names_a_teacher_by_its_hub_id_or_its_folder_name(teacher, shown, link, local):
    data = TCSModelCardData.from_fields(model_name="tiny")
    data.pipeline_tag, data.teacher_info = "image-classification", {"teacher": teacher}
    card = data.render()
    assert card.data.distillation_teacher == shown and "/gone" not in card.text
    assert (f"[{shown}](https://huggingface.co/{link})" if link else f"`{shown}`") in card.text
    assert ("a local folder; its Hub id was not given" in card.text) == local


def test_card_license_references_loss_terms_label_names_and_limitations(tmp_path, image_features):
    trainer = train(tmp_path, image_features, tcs_selection_strategy="no")  # no tailoring
    trainer.create_model_card(
        license="apache-2.0", reference_metrics={"teacher + linear probe": {"eval_accuracy": 0.9125}}
    )
    trainer.save_model()
    out = tmp_path / "out"
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0"
    # The student's result and the reference side by side, in one row.
    header = next(line for line in card.text.splitlines() if line.startswith("| Metric |"))
    assert header == "| Metric | out | teacher + linear probe |"
    assert any(line.startswith("| accuracy |") and line.endswith("| 0.9125 |") for line in card.text.splitlines())
    # The training log has the two terms of the training loss in their own columns, as logged.
    log_header = next(line for line in card.text.splitlines() if line.startswith("| Epoch |"))
    assert "| Training Loss (total) | Cross-Entropy | Coordinate Loss |" in log_header
    first = next(entry for entry in trainer.state.log_history if "ce_loss" in entry)
    row = next(
        line for line in card.text.splitlines() if line.startswith(f"| {first['epoch']:.4f} | {first['step']} |")
    )
    assert f"| {first['loss']:.4f} | {first['ce_loss']:.4f} | {first['tcs_loss']:.4f} |" in row
    # The usage snippet names the classes the student predicts (the training set's ClassLabel).
    usage = """classifier("path/to/image.jpg")  # [{'label': 'airplane', 'score': ...}]\n# The 10 labels: airplane, """
    assert usage in card.text
    # Limitations say what TCS assumes; a flat active-coordinates plot is left out.
    assert "More information needed" not in card.text and "**What TCS assumes:**" in card.text
    assert "tcs_active_coordinates.png" not in card.text and not (out / "tcs_active_coordinates.png").exists()
    assert (out / "tcs_spectrum.png").read_bytes().startswith(PNG_MAGIC)


def test_the_example_card_in_model_cards_is_one_the_current_demo_writes():
    """model_cards/ holds the card of `make demo` (`make demo && make model-cards`): it must follow today's template
    and the demo's card fields, or it is a stale copy."""
    from pathlib import Path

    from hf_tcs.model_card import TEMPLATE_PATH

    folder = Path(__file__).parent.parent / "model_cards" / "banking77-bert-tcs"
    card = ModelCard.load(folder / "README.md")
    headings = [line for line in TEMPLATE_PATH.read_text().splitlines() if line.startswith("#") and "{" not in line]
    missing = [heading for heading in headings if heading not in card.text.splitlines()]
    assert not missing, f"stale card (run `make demo && make model-cards`): it lacks {missing}"
    assert card.data.license == "apache-2.0" and "| teacher all-MiniLM-L6-v2 + linear probe |" in card.text
    assert "**What TCS assumes:**" in card.text
    linked = set(re.findall(r"\]\((tcs_[\w]+\.png)\)", card.text))
    assert linked == {path.name for path in folder.glob("*.png")}  # every plot linked is there, and no other


def test_a_misspelt_card_field_is_an_error_not_a_silent_attribute():
    data = TCSModelCardData.from_fields(model_name="tiny")
    with pytest.raises(AttributeError, match="teacher"):
        data.teacher = {"teacher": "facebook/dinov2-small"}  # the field is `teacher_info`
    with pytest.raises(TypeError, match="Unknown model card fields"):
        TCSModelCardData.from_fields(techer="facebook/dinov2-small")
