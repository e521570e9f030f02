"""The `hf-tcs` jobs as plain functions: `precompute`, `distill` and `push`, and the steps they are made of.

The console script (`hf_tcs.cli`) and the scripts in `examples/` call these functions; they can be called from Python
too. Every step is safe under `accelerate launch`: datasets are prepared on the main process first (the other
processes then read its cache), the teacher pass is shared out between the processes, and only the main process
writes outside the Trainer.

    distill = prepare_task -> build_trainer (prepare_targets, then the student's view) -> train_and_save
    precompute = prepare_task -> teacher_features -> fit_coordinate_system -> save_to_disk + tcs/ (+ push)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import set_seed

from .config import TCSConfig
from .coordinates import COORDINATE_SYSTEM_FOLDER, CoordinateSystem, fit_coordinate_system
from .data import DataArguments, TaskData, load_task_data, student_inputs
from .features import precompute_teacher_features
from .hub import push_features_to_hub, push_student_to_hub
from .models import StudentArguments, load_processor, load_student
from .names import parse_model_name
from .targets import prepare_targets
from .teachers import load_configured_teacher
from .trainer import TCSDistillationTrainer

__all__ = [
    "ModelCardArguments",
    "PrecomputeArguments",
    "PushArguments",
    "build_trainer",
    "distill",
    "precompute",
    "prepare_task",
    "push",
    "saved_coordinate_system",
    "teacher_features",
    "train_and_save",
]

logger = logging.getLogger(__name__)


@dataclass
class PrecomputeArguments:
    """Where `hf-tcs precompute --push_to_hub` publishes the features."""

    hub_dataset_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset repo (namespace/name) that --push_to_hub publishes the dataset with its teacher "
            "features and coordinates, and the coordinate system, to."
        },
    )


@dataclass
class PushArguments:
    """Where `hf-tcs push` publishes a trained student."""

    hub_model_id: str | None = field(default=None, metadata={"help": "Hub model repo (namespace/name). Required."})
    hub_private_repo: bool | None = field(
        default=None, metadata={"help": "Create the repo as private (the Hub's default when not set)."}
    )
    hub_token: str | None = field(default=None, metadata={"help": "Hub token; the stored login when not set."})
    hub_revision: str | None = field(default=None, metadata={"help": "Branch to push to."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message of the push."})

    def __post_init__(self):
        if not self.hub_model_id:
            raise ValueError("--hub_model_id is required: the Hub model repo to push to, e.g. my-name/my-student.")


@dataclass
class ModelCardArguments:
    """What the student's model card says that the training run cannot know."""

    license: str | None = field(
        default=None,
        metadata={"help": "License of the student, as the Hub names it (apache-2.0, mit, cc-by-4.0, ...)."},
    )
    reference_metrics: dict | str | None = field(
        default=None,
        metadata={
            "help": "Results shown next to the student's in its card, by name, as JSON, e.g. the teacher's own "
            'linear probe: \'{"teacher + linear probe": {"accuracy": 0.93}}\'.'
        },
    )

    def __post_init__(self):
        if isinstance(self.reference_metrics, str):
            try:
                self.reference_metrics = json.loads(self.reference_metrics)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"--reference_metrics is not valid JSON ({error}): {self.reference_metrics!r}."
                ) from error
        references = self.reference_metrics
        if references is not None and not (
            isinstance(references, dict)
            and all(
                isinstance(metrics, dict) and all(isinstance(v, int | float) for v in metrics.values())
                for metrics in references.values()
            )
        ):
            raise ValueError(
                f"--reference_metrics {references!r}: map each reference's name to its metrics, e.g. "
                '\'{"teacher + linear probe": {"accuracy": 0.93}}\'.'
            )

    def card_fields(self) -> dict[str, Any]:
        """The `TCSModelCardData` fields these arguments set."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


def prepare_task(data_args: DataArguments, config: TCSConfig) -> TaskData:
    """Load and label the task's splits, on the main process first so that the others read its cache."""
    with config.main_process_first(desc="loading the dataset"):
        return load_task_data(
            data_args, seed=config.data_seed or config.seed, input_column=config.teacher_input_column
        )


def teacher_features(task: TaskData, config: TCSConfig, splits: list[str] | None = None) -> TaskData:
    """Run the teacher once over those of `splits` (default: all) that have no feature column yet.

    Each process of a multi-process run encodes its own shard (`precompute_teacher_features`); the feature column
    records the teacher (its provenance), which the coordinate system fitted on it keeps.
    """
    missing = [
        name for name in splits or list(task.splits) if config.tcs_feature_column not in task.splits[name].column_names
    ]
    if not missing:
        return task
    if not config.teacher_model_name_or_path:
        raise ValueError("--teacher_model_name_or_path is required: the Hub id or local folder of the teacher.")
    teacher = load_configured_teacher(config.teacher_model_name_or_path, config)
    encoded = dict(task.splits)
    for name in missing:
        encoded[name] = precompute_teacher_features(
            encoded[name],
            teacher,
            input_column=task.input_column,
            batch_size=config.teacher_batch_size,
            output_column=config.tcs_feature_column,
        )
    return dataclasses.replace(task, splits=datasets.DatasetDict(encoded))


def saved_coordinate_system(data_args: DataArguments, task: TaskData, config: TCSConfig) -> CoordinateSystem | None:
    """The coordinate system published with a dataset that already has coordinates (`hf-tcs precompute` output).

    It sits in the dataset's `tcs/` folder, locally or in the Hub dataset repo. Without it the trainer scales the
    coordinates by their own variances.
    """
    name = data_args.dataset_name
    if name is None or config.tcs_coordinate_column not in task.train.column_names:
        return None
    folder = Path(name, COORDINATE_SYSTEM_FOLDER)
    if folder.is_dir():
        return CoordinateSystem.from_pretrained(folder)
    if Path(name).is_dir():
        return None
    try:
        return CoordinateSystem.from_pretrained(
            name, subfolder=COORDINATE_SYSTEM_FOLDER, repo_type="dataset", revision=data_args.dataset_revision
        )
    except OSError as error:
        logger.warning("The dataset %s has coordinates but no coordinate system in tcs/ (%s).", name, error)
        return None


def build_trainer(
    task: TaskData,
    student_args: StudentArguments,
    config: TCSConfig,
    coordinate_system: CoordinateSystem | None = None,
) -> TCSDistillationTrainer:
    """The student (seeded) and the `TCSDistillationTrainer` that trains it on the task.

    The teacher reads the raw inputs and the student its own view of them, so the targets come first:
    `prepare_targets` runs the teacher pass on the training split (and the unlabelled pool) when they have neither
    features nor coordinates (`config.teacher_model_name_or_path`), fits the coordinate system unless one is given,
    and adds the coordinates. Then the splits get the student's view (its processor, its augmentation) and the
    trainer is built on them. For an image task that view is made on the fly from the image column, which Trainer
    must therefore not remove: the trainer gets a copy of `config` with `remove_unused_columns=False` (the caller's
    `config` is left as it is).
    """
    name, revision = _processor_source(student_args, config, coordinate_system)
    processor = load_processor(name, task.modality, revision)
    set_seed(config.seed)
    student = load_student(
        student_args.student_model_name_or_path,
        modality=task.modality,
        label_names=task.label_names,
        config_overrides=student_args.student_config,
        revision=student_args.student_revision,
        processor=processor,
    )
    if task.modality == "image" and config.remove_unused_columns:
        logger.info("remove_unused_columns=False: the student's pixel_values are made on the fly from the images.")
        config = dataclasses.replace(config, remove_unused_columns=False)
    max_length = _max_length(student_args.max_length, student)

    def student_view(dataset: datasets.Dataset | None, desc: str, augment: bool = False) -> datasets.Dataset | None:
        if dataset is None:
            return None
        with config.main_process_first(desc=f"student inputs ({desc})"):
            return student_inputs(
                dataset,
                processor,
                input_column=task.input_column,
                modality=task.modality,
                augment=augment,
                max_length=max_length,
                keep_columns=[config.tcs_coordinate_column],
            )

    train, pool, seconds = task.train, task.unlabeled, None
    if config.tcs_loss_weight > 0 or config.tcs_lsh_weight > 0:
        targets = prepare_targets(config, train, coordinate_system=coordinate_system, unlabeled_dataset=pool)
        train, pool = targets.train_dataset, targets.unlabeled_dataset
        coordinate_system, seconds = targets.coordinate_system, targets.teacher_pass_seconds
    trainer = TCSDistillationTrainer(
        model=student,
        args=config,
        train_dataset=student_view(train, "training", augment=student_args.augment),
        eval_dataset=student_view(task.eval, "evaluation"),
        processing_class=processor,
        coordinate_system=coordinate_system,
        unlabeled_dataset=student_view(pool, "unlabelled pool", augment=student_args.augment),
    )
    if seconds is not None:
        trainer.model_card.remember(teacher_pass_seconds=seconds)
    return trainer


def _processor_source(
    student_args: StudentArguments, config: TCSConfig, coordinate_system: CoordinateSystem | None
) -> tuple[str, str | None]:
    """Where the student's processor comes from (name, revision): its own, else the teacher's."""
    if student_args.processor_name_or_path:
        return student_args.processor_name_or_path, None
    student = student_args.student_model_name_or_path
    if parse_model_name(student).kind not in ("architecture", "timm_registry"):  # pretrained: its own processor
        return student, student_args.student_revision
    if config.teacher_model_name_or_path:
        return config.teacher_model_name_or_path, config.teacher_revision
    if coordinate_system is not None and coordinate_system.metadata.get("teacher"):
        metadata = coordinate_system.metadata
        local_copy = metadata.get("teacher_path")  # a local copy of the Hub teacher (`--teacher_hub_id`)
        name = local_copy if local_copy and parse_model_name(local_copy).kind == "folder" else metadata["teacher"]
        return name, metadata.get("teacher_revision")
    raise ValueError(
        f"The student {student!r} is built from an architecture and has no processor of its own: pass "
        "--processor_name_or_path (or --teacher_model_name_or_path, whose processor is then used)."
    )


def _max_length(max_length: int | None, student: Any) -> int | None:
    positions = getattr(student.config, "max_position_embeddings", None)
    if max_length is None or positions is None:
        return max_length or positions
    return min(max_length, positions)


def train_and_save(trainer: TCSDistillationTrainer, card: ModelCardArguments | None = None) -> dict[str, float]:
    """Train, evaluate, then save the folded student (with its processor, card and `tcs/`) and push it when asked.

    Saving comes after evaluation so that the model card reports the evaluation; `card` adds what the run cannot
    know (license, reference results). Returns the training metrics and, with an evaluation split, the `eval_*`
    metrics.
    """
    args = trainer.args
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    metrics = dict(result.metrics)
    if trainer.eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    trainer.save_state()
    if card is not None and card.card_fields():
        trainer.create_model_card(**card.card_fields())
    if args.push_to_hub:
        trainer.push_to_hub()  # saves the model to output_dir first
    else:
        trainer.save_model()
    return metrics


def distill(
    data_args: DataArguments, student_args: StudentArguments, config: TCSConfig, card: ModelCardArguments | None = None
) -> dict[str, float]:
    """The whole job: dataset, teacher pass and coordinate system, student, training, evaluation, save (and push)."""
    task = prepare_task(data_args, config)
    trainer = build_trainer(task, student_args, config, saved_coordinate_system(data_args, task, config))
    return train_and_save(trainer, card)


def precompute(
    data_args: DataArguments, precompute_args: PrecomputeArguments, config: TCSConfig
) -> tuple[TaskData, CoordinateSystem]:
    """Teacher features and coordinates for every split, saved to `config.output_dir` (and pushed when asked).

    The folder holds the dataset (`save_to_disk`, with `teacher_features` and `tcs_coordinates`) and the coordinate
    system in `tcs/`: `hf-tcs distill --dataset_name <folder>` trains on it without running the teacher again.
    """
    if config.push_to_hub and not precompute_args.hub_dataset_id:
        raise ValueError("--push_to_hub needs --hub_dataset_id: the Hub dataset repo to push the features to.")
    task = prepare_task(data_args, config)
    task = teacher_features(task, config)
    coordinate_system = fit_coordinate_system(task.train, config)
    with config.main_process_first(desc="adding TCS coordinates"):
        splits = coordinate_system.add_coordinates(
            task.splits, feature_column=config.tcs_feature_column, output_column=config.tcs_coordinate_column
        )
    task = dataclasses.replace(task, splits=splits)
    if config.should_save:
        output_dir = Path(config.output_dir)
        splits.save_to_disk(str(output_dir))
        coordinate_system.save_pretrained(output_dir / COORDINATE_SYSTEM_FOLDER)
        logger.info("Saved the dataset with teacher features and coordinates, and tcs/, to %s", output_dir)
        if config.push_to_hub:
            push_features_to_hub(
                splits,
                precompute_args.hub_dataset_id,
                coordinate_system=coordinate_system,
                feature_column=config.tcs_feature_column,
                private=config.hub_private_repo,
                token=config.hub_token,
                revision=config.hub_revision,
            )
    return task, coordinate_system


def push(push_args: PushArguments, folder: str) -> Any:
    """Push a student folder written by `hf-tcs distill` (or `trainer.save_model`) to the Hub; returns the commit."""
    return push_student_to_hub(
        folder,
        push_args.hub_model_id,
        private=push_args.hub_private_repo,
        token=push_args.hub_token,
        revision=push_args.hub_revision,
        commit_message=push_args.commit_message,
    )
