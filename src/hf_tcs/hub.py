"""Publishing to the Hub: a distilled student's folder, and precomputed teacher features as a dataset.

`TCSDistillationTrainer.push_to_hub()` is the usual way to publish a student; `push_student_to_hub` publishes a folder
written earlier by `trainer.save_model` (what `hf-tcs push` does). `push_features_to_hub` publishes the teacher pass
itself (features, and the coordinate system in `tcs/`) with a dataset card recording the teacher and the fingerprint,
so that others distil from it without running the teacher.

Both update the card already on the Hub instead of replacing it (user edits outside hf_tcs' section survive, those
made on the Hub and those made in the local README alike), and a failure raises `HubPublishingError` saying which step
failed. What is uploaded is staged in a temporary directory (as timm's `push_to_hf_hub` does): the user's folder is
only ever read.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import DatasetCard, DatasetCardData, HfApi, ModelCard
from huggingface_hub.errors import RevisionNotFoundError

from .columns import FEATURE_COLUMN, column_provenance, teacher_provenance
from .coordinates import COORDINATE_SYSTEM_FOLDER, CoordinateSystem
from .model_card import (
    CITATION,
    GENERATED_END,
    GENERATED_START,
    card_tags,
    merge_card,
    merge_user_text,
    published_card,
)
from .names import parse_model_name
from .teachers import Teacher

__all__ = ["HubPublishingError", "push_features_to_hub", "push_student_to_hub"]

_DATASET_TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"
# What Trainer.push_to_hub leaves out of an output folder too: private files and checkpoints.
_IGNORE_PATTERNS = ["_*", "checkpoint-*"]

logger = logging.getLogger(__name__)


class HubPublishingError(RuntimeError):
    """A push to the Hub failed; the message names the step, the repo and what to do."""


def push_student_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
):
    """Upload a student saved by `TCSDistillationTrainer.save_model` (folded model, processor, card, plots, `tcs/`).

    The uploaded card is the local README.md merged with the one on the Hub, if any: hf_tcs' section and metadata
    from the local card, and the user text of both (nothing written on either side is lost). The upload is staged in a
    temporary directory; `folder` is never written to.

    Returns the `CommitInfo` of the new commit, or None when the Hub repo already held exactly these files (nothing
    changed, no commit was made; a warning says so).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} has no config.json: pass the folder written by `trainer.save_model(folder)` (or the "
            "`--output_dir` of `hf-tcs distill`)."
        )
    api = HfApi()
    with _step("create the repo", repo_id):
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    readme = folder / "README.md"
    with _step("read the published model card", repo_id):
        published = published_card(repo_id, revision=revision, token=token)
        head = _head_commit(api, repo_id, revision, token)
    with tempfile.TemporaryDirectory(prefix="hf_tcs-push-") as staging:
        _stage(folder, Path(staging))
        if readme.is_file():
            local = readme.read_text(encoding="utf-8")
            # Merged even with no card on the Hub yet: the same folder pushed twice then uploads the same text.
            base = local if published is None else published
            merged = merge_user_text(merge_card(base, ModelCard(local)), local)
            (Path(staging) / "README.md").unlink()  # a hard link to the user's README: never write through it
            (Path(staging) / "README.md").write_text(str(merged), encoding="utf-8")
        with _step(f"upload {folder}", repo_id):
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                commit_message=commit_message or "Upload student distilled with hf_tcs",
                token=token,
                revision=revision,
                ignore_patterns=_IGNORE_PATTERNS,
            )
    if head is not None and commit.oid == head:
        logger.warning(
            f"Nothing changed: the Hub repo {repo_id!r} already holds these files (commit {head}); no commit was made."
        )
        return None
    logger.info(f"Pushed {folder} to {commit.commit_url}")
    return commit


def _head_commit(api: HfApi, repo_id: str, revision: str | None, token: str | None) -> str | None:
    """The commit the revision points at, or None for a branch that does not exist yet."""
    try:
        return api.repo_info(repo_id, revision=revision, token=token).sha
    except RevisionNotFoundError:
        return None


def _stage(folder: Path, staging: Path) -> None:
    """Put what is published of `folder` into `staging`: hard links where the filesystem allows (no copy of the
    weights), copies elsewhere; private files and checkpoints are left out, as `upload_folder` would."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        if Path(directory) != folder:
            return []
        return [name for name in names if any(fnmatch.fnmatch(name, pattern) for pattern in _IGNORE_PATTERNS)]

    def link_or_copy(source: str, destination: str) -> None:
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    shutil.copytree(folder, staging, ignore=ignore, copy_function=link_or_copy, dirs_exist_ok=True)


def push_features_to_hub(
    dataset: datasets.Dataset | datasets.DatasetDict,
    repo_id: str,
    *,
    coordinate_system: CoordinateSystem | None = None,
    teacher: Teacher | None = None,
    feature_column: str = FEATURE_COLUMN,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    max_shard_size: int | str | None = None,
):
    """Publish precomputed teacher features (`Dataset.push_to_hub`) with a dataset card, and the coordinate system.

    Args:
        dataset: the output of `precompute_teacher_features` (a `Dataset`, pushed as split `train`, or a
            `DatasetDict`); it may also hold the coordinate column.
        repo_id: the dataset repo, `namespace/name`.
        coordinate_system: published in the repo's `tcs/` folder; load it back with
            `CoordinateSystem.from_pretrained(repo_id, subfolder="tcs", repo_type="dataset")`.
        teacher: the `Teacher` that made the features; when not given, the card records the teacher that the
            coordinate system's or the feature column's provenance names.
        feature_column: the column with the teacher's features.
        private / token / revision / commit_message / max_shard_size: as in `datasets.Dataset.push_to_hub`.

    Returns the `CommitInfo` of the card commit (the last one).
    """
    splits = {"train": dataset} if isinstance(dataset, datasets.Dataset) else dataset
    if not isinstance(splits, datasets.DatasetDict | dict) or not splits:
        raise TypeError(f"push_features_to_hub takes a datasets.Dataset or DatasetDict, got {type(dataset).__name__}.")
    for split, split_dataset in splits.items():
        if feature_column not in split_dataset.column_names:
            raise ValueError(
                f"Split {split!r} has no {feature_column!r} column (columns: {split_dataset.column_names}): run "
                "`precompute_teacher_features(dataset, teacher)` first, or pass `feature_column=`."
            )
    if teacher is not None and not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher= takes the Teacher (from `load_teacher`) that made the features, got {type(teacher).__name__}; "
            "leave it out when the feature column or the coordinate system records the teacher."
        )
    teacher_info = teacher.to_dict() if teacher is not None else {}
    if not teacher_info and coordinate_system is not None:
        teacher_info = teacher_provenance(coordinate_system.metadata)
    if not teacher_info.get("teacher"):  # what the teacher pass recorded in the feature column itself
        teacher_info = teacher_provenance(column_provenance(next(iter(splits.values())), feature_column))
    if not teacher_info.get("teacher"):
        raise ValueError(
            "push_features_to_hub records the teacher in the dataset card, and none was given: pass `teacher=` (the "
            "Teacher from `load_teacher` that made the features)."
        )
    api = HfApi()
    with _step("push the dataset", repo_id):
        datasets.DatasetDict(splits).push_to_hub(
            repo_id,
            private=private,
            token=token,
            revision=revision,
            commit_message=commit_message or "Upload teacher features computed with hf_tcs",
            max_shard_size=max_shard_size,
        )
    if coordinate_system is not None:
        with tempfile.TemporaryDirectory() as directory, _step("upload the coordinate system", repo_id):
            coordinate_system.save_pretrained(directory)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=directory,
                path_in_repo=COORDINATE_SYSTEM_FOLDER,
                repo_type="dataset",
                token=token,
                revision=revision,
                commit_message="Upload the TCS coordinate system",
            )
    card = _dataset_card(repo_id, splits, teacher_info, coordinate_system, feature_column)
    with _step("update the dataset card", repo_id):
        published = published_card(repo_id, repo_type="dataset", revision=revision, token=token)
        if published is not None:
            card = merge_card(published, card)
        return api.upload_file(
            path_or_fileobj=str(card).encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
            token=token,
            revision=revision,
            commit_message="Dataset card: teacher and fingerprint",
        )


def _dataset_card(
    repo_id: str,
    splits: dict[str, datasets.Dataset],
    teacher_info: dict[str, Any],
    coordinate_system: CoordinateSystem | None,
    feature_column: str,
) -> DatasetCard:
    tags = card_tags(teacher_info, ["teacher-features"])
    teacher_name = parse_model_name(teacher_info["teacher"]).card_id
    teacher_rows = [("Teacher", teacher_name)] + [
        (name.removeprefix("teacher_").replace("_", " ").capitalize(), teacher_info[name])
        for name in (
            "teacher_revision",
            "teacher_class",
            "teacher_backend",
            "pooling",
            "normalize",
            "feature_dim",
            "teacher_fingerprint",
        )
        if teacher_info.get(name) is not None
    ]
    teacher_rows.append(("Feature column", f"`{feature_column}` (float32)"))
    split_rows = [
        {
            "name": name,
            "rows": f"{len(split):,}",
            "columns": ", ".join(split.column_names),
            "fingerprint": split._fingerprint,
        }
        for name, split in splits.items()
    ]
    description = None
    usage = f'from datasets import load_dataset\n\ndataset = load_dataset("{repo_id}")'
    if coordinate_system is not None:
        description = (
            f"k = {coordinate_system.num_components} of D = {coordinate_system.feature_dim} components "
            f"({coordinate_system.total_explained_variance:.1%} of the variance), fitted on "
            f"{coordinate_system.num_examples:,} examples"
        )
        usage += (
            "\n\nfrom hf_tcs import CoordinateSystem, TCSDistillationTrainer\n\n"
            "coordinate_system = CoordinateSystem.from_pretrained(\n"
            f'    "{repo_id}", subfolder="{COORDINATE_SYSTEM_FOLDER}", repo_type="dataset"\n'
            ")\n"
            "trainer = TCSDistillationTrainer(\n"
            '    model=student, args=args, train_dataset=dataset["train"], coordinate_system=coordinate_system\n'
            ")"
        )
    return DatasetCard.from_template(
        DatasetCardData(tags=tags, distillation_teacher=teacher_name),
        template_path=str(_DATASET_TEMPLATE),
        generated_start=GENERATED_START,
        generated_end=GENERATED_END,
        teacher_name=teacher_name,
        teacher=teacher_rows,
        splits=split_rows,
        coordinate_system=description,
        usage=usage,
        citation=CITATION,
    )


@contextmanager
def _step(what: str, repo_id: str) -> Iterator[None]:
    """Turn any failure inside the block into a `HubPublishingError` naming the step and the repo."""
    try:
        yield
    except HubPublishingError:
        raise
    except Exception as error:
        raise HubPublishingError(
            f"Publishing to the Hub repo {repo_id!r} failed when trying to {what}: {type(error).__name__}: {error}. "
            "Local files are untouched; check the repo id, your token's write access and the network "
            "(HF_HUB_OFFLINE must be unset), then push again."
        ) from error
