"""`push_student_to_hub` / `hf-tcs push`: the user's folder is only read, both cards' edits survive, and every
message is true (a push that changes nothing says so; a failed one leaves the folder as it was)."""

import hashlib
import logging

import pytest
from huggingface_hub import HfApi, ModelCard
from test_cli import main
from test_hub import train

from hf_tcs.hub import HubPublishingError, push_student_to_hub


def snapshot(folder) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: content hash and modification time (ns)."""
    return {
        str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def student_folder(tmp_path, image_features):
    folder = tmp_path / "student"
    train(tmp_path, image_features).save_model(str(folder))
    readme = folder / "README.md"
    readme.write_text(readme.read_text() + "\n\nLocal notes: only for cats.\n")
    return folder


def test_a_push_merges_both_cards_user_text_and_never_writes_the_folder(student_folder, local_hub):
    HfApi().create_repo("user/both")
    HfApi().upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n\nNotes written on the Hub.\n",
        path_in_repo="README.md",
        repo_id="user/both",
    )
    before = snapshot(student_folder)
    commit = push_student_to_hub(student_folder, "user/both")
    assert commit is not None and local_hub.commits("user/both")[0].oid == commit.oid
    assert snapshot(student_folder) == before  # not one byte, not one timestamp
    card = ModelCard.load("user/both")
    assert "Notes written on the Hub." in card.text and "Local notes: only for cats." in card.text
    assert "How it was distilled" in card.text and card.data.license == "mit"
    assert card.text.count("hf_tcs: start of the generated card") == 1
    assert card.text.count("**What TCS assumes:**") == 1  # the template's own text is no user text: not doubled


def test_pushing_the_same_folder_again_says_nothing_changed(student_folder, local_hub, caplog):
    first = push_student_to_hub(student_folder, "user/same")
    commits = len(local_hub.commits("user/same"))
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        again = push_student_to_hub(student_folder, "user/same")
    assert again is None and len(local_hub.commits("user/same")) == commits
    assert f"Nothing changed: the Hub repo 'user/same' already holds these files (commit {first.oid})" in caplog.text
    # Through the CLI too: exit 0, and the same warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        assert main(["push", str(student_folder), "--hub_model_id", "user/same"]) == 0
    assert "Nothing changed" in caplog.text and len(local_hub.commits("user/same")) == commits


@pytest.mark.parametrize("failing", ["the server", "the upload"])
def test_a_failed_push_leaves_the_folder_as_it_was(failing, student_folder, local_hub, monkeypatch):
    push_student_to_hub(student_folder, "user/fails")
    readme = student_folder / "README.md"
    readme.write_text(readme.read_text() + "\nA later local edit.\n")
    before = snapshot(student_folder)
    if failing == "the server":
        local_hub.close()
    else:  # the card was read and merged, then the commit is refused: the message must still be true

        def refuse(*args, **kwargs):
            raise RuntimeError("commit refused")

        monkeypatch.setattr(HfApi, "upload_folder", refuse)
    with pytest.raises(HubPublishingError, match="Local files are untouched"):
        push_student_to_hub(student_folder, "user/fails")
    assert snapshot(student_folder) == before


def test_the_trainers_push_keeps_edits_of_the_local_readme_next_to_the_hubs(tmp_path, image_features, local_hub):
    trainer = train(tmp_path, image_features, hub_model_id="user/trainer-push")
    trainer.push_to_hub()
    published = ModelCard.load("user/trainer-push")
    published.text = published.text + "\n\nHub notes.\n"
    HfApi().upload_file(path_or_fileobj=str(published).encode(), path_in_repo="README.md", repo_id="user/trainer-push")
    readme = tmp_path / "out" / "README.md"
    readme.write_text(readme.read_text() + "\n\nLocal notes.\n")
    trainer.push_to_hub(commit_message="Again")
    card = ModelCard.load("user/trainer-push")
    assert "Hub notes." in card.text and "Local notes." in card.text
    assert card.text.count("**What TCS assumes:**") == 1
