"""hf_tcs.names: the one parser of teacher and student names (folders, Hub ids, architectures)."""

import dataclasses
import os

import pytest

from hf_tcs.names import ModelName, parse_model_name


def test_existing_folders_are_folders_however_they_are_written(tmp_path, monkeypatch):
    folder = tmp_path / "dino"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    for name, path in [(str(folder), str(folder)), ("dino", "dino"), ("./dino", "./dino"), (folder, str(folder))]:
        parsed = parse_model_name(name)
        assert (parsed.kind, parsed.path, parsed.hub_id, parsed.prefix) == ("folder", path, None, None)
        assert parsed.card_id == "dino" and parsed.hub_repo_id is None
        assert parsed.timm_model_id("v1") == f"local-dir:{path}"  # a folder has no revision to pin
    timm_local = parse_model_name(f"local-dir:{folder}")
    assert (timm_local.kind, timm_local.path, timm_local.prefix) == ("folder", str(folder), "local-dir")
    assert timm_local.is_timm_name and timm_local.timm_model_id() == f"local-dir:{folder}"


def test_a_folder_wins_over_an_architecture_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "bert").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_model_name("bert").kind == "folder"


@pytest.mark.parametrize(
    ("name", "card_id"),
    [("./missing", "missing"), ("~/missing", "missing"), (f"{os.sep}no{os.sep}teacher", "teacher"), ("a/b/c", "c")],
)
def test_names_written_as_paths_are_paths_not_hub_ids(name, card_id):
    parsed = parse_model_name(name)
    assert (parsed.kind, parsed.path, parsed.hub_id, parsed.hub_repo_id) == ("path", name, None, None)
    assert parsed.card_id == card_id  # a card never shows a local path


def test_local_dir_and_files_that_are_no_folder_are_paths(tmp_path):
    missing = parse_model_name(f"local-dir:{tmp_path / 'gone'}")
    assert (missing.kind, missing.path, missing.prefix) == ("path", str(tmp_path / "gone"), "local-dir")
    file = tmp_path / "weights.pt"
    file.write_bytes(b"")
    assert parse_model_name(str(file)).kind == "path"


def test_hub_ids_with_and_without_timm_prefix_and_revision():
    plain = parse_model_name("facebook/dinov2-small")
    assert (plain.kind, plain.hub_id, plain.revision, plain.prefix) == ("hub", "facebook/dinov2-small", None, None)
    assert plain.hub_repo_id == plain.card_id == "facebook/dinov2-small" and not plain.is_timm_name
    assert plain.timm_model_id() == "hf-hub:facebook/dinov2-small"
    assert plain.timm_model_id("abc123") == "hf-hub:facebook/dinov2-small@abc123"

    timm_hub = parse_model_name("timm/resnet50.a1_in1k")
    assert (timm_hub.kind, timm_hub.hub_id) == ("hub", "timm/resnet50.a1_in1k") and timm_hub.is_timm_name
    assert timm_hub.timm_model_id("abc123") == "hf-hub:timm/resnet50.a1_in1k@abc123"

    prefixed = parse_model_name("hf-hub:org/model")
    assert (prefixed.kind, prefixed.hub_id, prefixed.revision, prefixed.prefix) == ("hub", "org/model", None, "hf-hub")
    assert prefixed.is_timm_name and prefixed.timm_model_id() == "hf-hub:org/model"
    assert prefixed.card_id == prefixed.hub_repo_id == "org/model"


def test_the_revision_written_into_the_name_wins():
    pinned = parse_model_name("hf-hub:org/model@v1")
    assert (pinned.hub_id, pinned.revision) == ("org/model", "v1")
    assert pinned.timm_model_id() == pinned.timm_model_id("other") == "hf-hub:org/model@v1"
    assert pinned.card_id == "org/model@v1" and pinned.hub_repo_id == "org/model"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bert", "architecture"),
        ("vit", "architecture"),
        ("resnet18", "timm_registry"),
        ("vit_small_patch16_224.dino", "timm_registry"),
        ("bert-base-uncased", "hub"),  # a legacy Hub id without namespace
    ],
)
def test_bare_words_are_architectures_registry_names_or_legacy_hub_ids(name, kind):
    parsed = parse_model_name(name)
    assert parsed.kind == kind and parsed.path is None and parsed.hub_repo_id is None
    assert parsed.hub_id == (name if kind == "hub" else None)
    assert parsed.card_id == name
    assert parsed.timm_model_id("v1") == name  # timm reads a bare word as a registry name, with nothing to pin


def test_model_names_are_frozen_values():
    assert parse_model_name("facebook/dinov2-small") == ModelName(
        "facebook/dinov2-small", "hub", hub_id="facebook/dinov2-small"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse_model_name("bert").kind = "hub"
