"""Model cards for distilled students: what the student is, what taught it, and what it cost.

`TCSModelCardData` holds everything the card says; `TCSModelCardData.from_trainer` fills it from a
`TCSDistillationTrainer` after training (config, coordinate system, log history, final evaluation), and
`save_model_card` renders the Jinja template shipped in `hf_tcs/templates/model_card.md` into `README.md` next to two
plots (the teacher's eigenvalue spectrum, the active coordinates over training).

The card's metadata says `library_name: transformers` (or `timm` for timm students), records the teacher under its
own keys (`distillation_teacher`, `distillation_teacher_revision`) and tags, and keeps `base_model` for the student's
initial checkpoint: a distilled student is not a fine-tune of its teacher. Everything hf_tcs writes in the body sits
between two HTML comments; an existing README (a user's edits, another library's card) keeps the rest of its text and
its metadata, and only that section and hf_tcs' own keys are replaced.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
import platform
import re
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, RepoCard
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from transformers.trainer_pt_utils import AcceleratorConfig

from .columns import teacher_provenance
from .names import parse_model_name
from .student import PROJECTOR_MIN_R2, get_tcs_head

__all__ = ["TCSModelCardData", "merge_user_text", "save_model_card"]

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
GENERATED_START = "<!-- hf_tcs: start of the generated card; hf_tcs rewrites this part on every save -->"
GENERATED_END = "<!-- hf_tcs: end of the generated card; edit freely below -->"
SPECTRUM_PLOT = "tcs_spectrum.png"
ACTIVE_PLOT = "tcs_active_coordinates.png"

CITATION = """@inproceedings{zhou2025tcs,
  title         = {All You Need in Knowledge Distillation Is a Tailored Coordinate System},
  author        = {Zhou, Junjie and Zhu, Ke and Wu, Jianxin},
  booktitle     = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year          = {2025},
  eprint        = {2412.09388},
  archivePrefix = {arXiv}
}"""

# Metrics the Hub's model-index understands; others stay in the body's tables only.
_INDEX_METRICS = ("accuracy", "f1", "precision", "recall", "matthews_correlation")
# Log entries that are bookkeeping, not results.
_NOT_RESULTS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "step")
# Arguments that say where or how a run was stored or reported, not how the student was trained.
_NOT_HYPERPARAMETERS = {
    "output_dir",
    "logging_dir",
    "run_name",
    "hub_model_id",
    "hub_strategy",
    "hub_private_repo",
    "hub_always_push",
    "hub_revision",
    "push_to_hub",
    "report_to",
    "disable_tqdm",
    "logging_steps",
    "logging_strategy",
    "logging_first_step",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "eval_strategy",
    "eval_steps",
    "dataloader_num_workers",
    "use_cpu",
    "do_train",
    "do_eval",
    "do_predict",
    "dataloader_pin_memory",
    "project",
    "trackio_space_id",
}
# The tags of everything hf_tcs publishes (the trainer's `_tag_names`, model and dataset cards).
TAGS = ("hf_tcs", "knowledge-distillation", "tcs")
_TEACHER_FAMILIES = ("dinov2", "dino", "mae", "clip", "siglip", "minilm", "mpnet", "bert", "vit", "resnet", "convnext")
# Packaged loaders: a dataset built by one of them has no Hub id to cite.
_PACKAGED_BUILDERS = {"csv", "json", "parquet", "text", "arrow", "pandas", "imagefolder", "audiofolder", "generator"}


@dataclass(slots=True)  # slots: a misspelt field is an AttributeError, not an attribute the card never reads
class TCSModelCardData:
    """Everything the card of a distilled student says.

    The first fields are the ones a user sets (through `trainer.push_to_hub(**kwargs)`,
    `trainer.create_model_card(**kwargs)` or by hand); `from_trainer` fills the rest.

    Args:
        model_name: the card's title (the repository name by default).
        model_id: the Hub id the student is published under; used in the usage snippet.
        language / license: card metadata, as on any Hub card.
        tags: extra tags, next to `hf_tcs`, `knowledge-distillation`, `tcs` and the teacher family.
        datasets: Hub ids of the training data (inferred from a dataset loaded from the Hub when not given).
        baseline_metrics: results of a comparison run (same student and budget), shown next to the student's,
            e.g. `{"accuracy": 0.84}`; keys may carry the `eval_` prefix.
        baseline_name: what the comparison run was.
        reference_metrics: more results to show next to the student's, by name, e.g. the teacher's own linear
            probe: `{"teacher + linear probe": {"accuracy": 0.93}}`; keys may carry the `eval_` prefix.
        eval_dataset_name: what the final evaluation ran on, e.g. a split name (the evaluation set's key, or
            "evaluation set", when not given).
        teacher_pass_seconds: the one-off teacher pass's time; the trainer sets it when it ran the pass, a script
            that ran it before the trainer passes it (`trainer.create_model_card(teacher_pass_seconds=...)`).
    """

    model_name: str = "tcs-student"
    model_id: str | None = None
    language: str | list[str] | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    baseline_name: str = "cross-entropy only (same student, same budget)"
    reference_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    teacher_pass_seconds: float | None = None

    # Filled from the trainer.
    library_name: str = "transformers"
    pipeline_tag: str | None = None
    base_model: str | None = None
    student_class: str = "PreTrainedModel"
    student_parameters: int | None = None
    num_labels: int | None = None
    label_names: list[str] = field(default_factory=list)
    teacher_info: dict[str, Any] = field(default_factory=dict)
    feature_dim: int | None = None
    num_components: int | None = None
    explained_variance: float | None = None
    fit_examples: int | None = None
    eigenvalues: list[float] = field(default_factory=list)
    target_scaling: str | None = None
    loss_weight: float | None = None
    projector_fit_r2: float | None = None
    tailoring: str = "no"
    active_coordinates: list[tuple[int, int]] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_logs: list[dict[str, Any]] = field(default_factory=list)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_dataset_name: str | None = None
    cost: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, **kwargs) -> TCSModelCardData:
        """Card data from user fields, also under transformers' `create_model_card` names: `finetuned_from` (the
        base model), `dataset` / `dataset_tags` (dataset ids); `tasks` and `dataset_args` are ignored. None values
        are skipped; unknown names raise a TypeError."""
        return cls(**_user_fields(kwargs))

    @classmethod
    def from_trainer(cls, trainer, **kwargs) -> TCSModelCardData:
        """Collect the card's contents from a (trained) `TCSDistillationTrainer`; `kwargs` are user fields, as in
        `from_fields`."""
        args, model = trainer.args, trainer.accelerator.unwrap_model(trainer.model)
        user = _user_fields(kwargs)
        config = getattr(model, "config", None)
        data = cls(**user)
        data.model_id = data.model_id or getattr(trainer, "hub_model_id", None) or args.hub_model_id
        if "model_name" not in user:
            data.model_name = (data.model_id or Path(args.output_dir).name).split("/")[-1]
        data.student_class = type(model).__name__
        data.student_parameters = sum(p.numel() for p in model.parameters())
        head = get_tcs_head(model)
        if head is not None:  # count the published (folded) classifier, not the training-time head
            data.student_parameters -= sum(p.numel() for p in head.parameters())
            data.student_parameters += (head.in_features + (head.classifier.bias is not None)) * head.num_labels
        data.num_labels = getattr(config, "num_labels", None)
        id2label = getattr(config, "id2label", None) or {}
        data.label_names = [str(id2label[i]) for i in range(len(id2label)) if i in id2label]
        data.library_name = "timm" if getattr(config, "model_type", None) == "timm_wrapper" else "transformers"
        input_name = getattr(model, "main_input_name", "input_ids")
        data.pipeline_tag = "image-classification" if input_name == "pixel_values" else "text-classification"
        if data.base_model is None and getattr(config, "_name_or_path", None):
            data.base_model = parse_model_name(config._name_or_path).hub_repo_id
        if not data.datasets:
            data.datasets = _dataset_ids(trainer.train_dataset)
        if data.eval_dataset_name is None and isinstance(trainer.eval_dataset, dict):
            data.eval_dataset_name = next(iter(trainer.eval_dataset), None)
        elif data.eval_dataset_name is None and trainer.eval_dataset is not None:
            data.eval_dataset_name = "evaluation set"

        coordinate_system = trainer.coordinate_system
        if coordinate_system is not None:
            data.teacher_info = teacher_provenance(coordinate_system.metadata)
            data.feature_dim = coordinate_system.feature_dim
            data.num_components = coordinate_system.num_components
            data.explained_variance = coordinate_system.total_explained_variance
            data.fit_examples = coordinate_system.num_examples
            data.eigenvalues = [float(value) for value in coordinate_system.all_eigenvalues]
        if not data.teacher_info.get("teacher") and getattr(trainer, "teacher_info", None):
            data.teacher_info = dict(trainer.teacher_info)
        data.target_scaling = args.tcs_target_scaling
        data.loss_weight = args.tcs_loss_weight
        data.projector_fit_r2 = getattr(trainer, "projector_fit_r2", None)
        if args.tcs_selection_strategy != "no" and args.tcs_selection_rounds > 0:
            data.tailoring = (
                f"{args.tcs_selection_rounds} rounds ({args.tcs_selection_strategy}) dropping "
                f"{args.tcs_drop_ratio:.0%} of the active coordinates each, measured on the "
                f"{args.tcs_importance_loss} loss, floor {args.tcs_min_components}"
            )
        history = trainer.state.log_history
        data.active_coordinates = [
            (entry["step"], int(entry["tcs_active_coordinates"]))
            for entry in history
            if "tcs_active_coordinates" in entry
        ]
        data.hyperparameters = _non_default_arguments(args)
        data.training_logs = _log_rows(history)
        data.eval_metrics = _final_evaluation(history)
        data.cost = _cost(trainer, history, data.teacher_pass_seconds)
        data.versions = _versions()
        return data

    # ---- Rendering ---------------------------------------------------------------------------------------------

    @property
    def all_tags(self) -> list[str]:
        return card_tags(self.teacher_info, self.tags)

    def to_card_data(self) -> ModelCardData:
        """The YAML metadata, with `model-index` built from the final evaluation."""
        eval_results = None
        if self.pipeline_tag and self.eval_metrics:
            dataset_id = self.datasets[0] if self.datasets else None
            eval_results = [
                EvalResult(
                    task_type=self.pipeline_tag,
                    dataset_type=dataset_id or "custom",
                    dataset_name=dataset_id or (self.eval_dataset_name or "evaluation set"),
                    metric_type=name,
                    metric_value=float(value),
                    dataset_split=None if dataset_id is None else self.eval_dataset_name,
                )
                for name, value in self.eval_metrics.items()
                if name in _INDEX_METRICS
            ] or None
        extra = {}
        if self.teacher_info.get("teacher"):
            extra["distillation_teacher"] = parse_model_name(self.teacher_info["teacher"]).card_id
            if self.teacher_info.get("teacher_revision"):
                extra["distillation_teacher_revision"] = self.teacher_info["teacher_revision"]
        return ModelCardData(
            language=self.language,
            license=self.license,
            library_name=self.library_name,
            pipeline_tag=self.pipeline_tag,
            tags=self.all_tags,
            datasets=self.datasets or None,
            metrics=[name for name in self.eval_metrics if name in _INDEX_METRICS] or None,
            base_model=self.base_model,
            model_name=self.model_name,
            eval_results=eval_results,
            **extra,
        )

    def render(self, *, active_plot: bool = True) -> ModelCard:
        """The card of this data alone (no existing README merged in)."""
        return ModelCard.from_template(
            self.to_card_data(),
            template_path=str(TEMPLATE_PATH),
            generated_start=GENERATED_START,
            generated_end=GENERATED_END,
            model_name=self.model_name,
            summary=self._summary(),
            student_description=self._student_description(),
            teacher_description=self._teacher_description(),
            dataset_description=", ".join(f"[{d}](https://huggingface.co/datasets/{d})" for d in self.datasets),
            student_class=self.student_class,
            usage=self._usage(),
            feature_dim=self.feature_dim or "D",
            coordinate_system_description=self._coordinate_system_description(),
            spectrum_plot=SPECTRUM_PLOT,
            active_plot=ACTIVE_PLOT if active_plot and self._shows_tailoring else None,
            hyperparameters=sorted(self.hyperparameters.items()),
            training_logs=_markdown_table(self.training_logs),
            results=self._results(),
            cost=list(self.cost.items()),
            versions=list(self.versions.items()),
            citation=CITATION,
        )

    @property
    def _shows_tailoring(self) -> bool:
        """Whether the active-coordinates plot says anything: without tailoring it is a flat line."""
        return self.tailoring != "no" and bool(self.active_coordinates)

    def _summary(self) -> str:
        task = (self.pipeline_tag or "classification").replace("-", " ")
        article = "An" if task[0] in "aeiou" else "A"
        teacher = self._teacher_name() or "a self-supervised teacher"
        return (
            f"{article} {task} model distilled from {teacher} with [hf_tcs](https://github.com/hf-tcs/hf_tcs) "
            "(teacher-free knowledge distillation: the teacher ran once over the training set, never during training)."
        )

    def _student_description(self) -> str:
        size = f", {self.student_parameters / 1e6:.2f}M parameters" if self.student_parameters else ""
        labels = f", {self.num_labels} labels" if self.num_labels else ""
        start = (
            f", initialised from [{self.base_model}](https://huggingface.co/{self.base_model})"
            if self.base_model
            else ""
        )
        return f"`{self.student_class}`{size}{labels}{start}"

    def _teacher_name(self) -> str | None:
        if not self.teacher_info.get("teacher"):
            return None
        name = parse_model_name(self.teacher_info["teacher"])
        shown, repo_id = name.card_id, name.hub_repo_id
        return f"[{shown}](https://huggingface.co/{repo_id})" if repo_id else f"`{shown}`"

    def _teacher_description(self) -> str:
        name = self._teacher_name()
        if name is None:
            return "not recorded (the coordinate system was built without teacher provenance)"
        info = self.teacher_info
        local = parse_model_name(info["teacher"]).kind in ("folder", "path")
        details = [
            "a local folder; its Hub id was not given (`load_teacher(folder, hub_id=...)`, `--teacher_hub_id`)"
            if local
            else None,
            f"revision `{info['teacher_revision']}`" if info.get("teacher_revision") else None,
            f"`{info['teacher_class']}`" if info.get("teacher_class") else None,
            f"{info['pooling']} pooling" if info.get("pooling") else None,
            f"{self.feature_dim}-d features" if self.feature_dim else None,
            f"fingerprint `{fingerprint}`" if (fingerprint := info.get("teacher_fingerprint")) else None,
        ]
        details = [detail for detail in details if detail]
        return name + (f" ({', '.join(details)})" if details else "")

    def _usage(self) -> str:
        model_id = self.model_id or f"<your-namespace>/{self.model_name}"
        if self.library_name == "timm":
            return (
                "import timm\n\n"
                f'model = timm.create_model("hf-hub:{model_id}", pretrained=True).eval()\n'
                "config = timm.data.resolve_data_config({}, model=model)\n"
                "transform = timm.data.create_transform(**config)\n"
                "logits = model(transform(image).unsqueeze(0))"
            )
        example = '"path/to/image.jpg"' if self.pipeline_tag == "image-classification" else '"Your text here"'
        usage = (
            "from transformers import pipeline\n\n"
            f'classifier = pipeline("{self.pipeline_tag}", model="{model_id}")\n'
            f"classifier({example})"
        )
        if self.label_names:
            usage += f"  # [{{'label': '{self.label_names[0]}', 'score': ...}}]\n# {_label_list(self.label_names)}"
        return usage

    def _coordinate_system_description(self) -> str:
        if self.num_components is None:
            return (
                "The training set came with precomputed teacher coordinates; their coordinate system was not recorded."
            )
        lines = [
            f"- **Coordinate system:** k = {self.num_components} of D = {self.feature_dim} principal components "
            f"({self.explained_variance:.1%} of the teacher's feature variance), fitted on {self.fit_examples:,} "
            "training examples.",
            f"- **Loss:** cross-entropy + {self.loss_weight:g} x mean squared error on the active coordinates "
            f"(targets scaled: `{self.target_scaling}`).",
        ]
        if self.projector_fit_r2 is not None and self.projector_fit_r2 >= PROJECTOR_MIN_R2:
            lines.append(
                "- **Projector init:** least squares from the student's initial features to the teacher coordinates "
                f"(explaining {self.projector_fit_r2:.1%} of their variance on held-out examples)."
            )
        if self.tailoring == "no":
            lines.append(f"- **Tailoring:** off; all {self.num_components} coordinates stayed active.")
        else:
            final = self.active_coordinates[-1][1] if self.active_coordinates else self.num_components
            lines.append(
                f"- **Tailoring:** {self.tailoring}; the coordinate system shrank from {self.num_components} to "
                f"{final} active coordinates."
            )
        return "\n".join(lines)

    def _results(self) -> str:
        if not self.eval_metrics:
            return "No evaluation was run."
        others = {f"Baseline: {self.baseline_name}": self.baseline_metrics} if self.baseline_metrics else {}
        others.update(self.reference_metrics)
        others = {
            column: {name.removeprefix("eval_"): value for name, value in metrics.items()}
            for column, metrics in others.items()
        }
        rows = [
            {
                "Metric": name,
                self.model_name: _format(value),
                **{column: _format(metrics.get(name)) for column, metrics in others.items()},
            }
            for name, value in self.eval_metrics.items()
        ]
        where = f" ({self.eval_dataset_name})" if self.eval_dataset_name else ""
        return f"Final evaluation{where}:\n\n{_markdown_table(rows)}"


class ModelCardWriter:
    """The model card of a `TCSDistillationTrainer`: the user's card fields, remembered across saves, and the
    rendering of the card from the trainer's state.

    `create_model_card(**fields)` and `push_to_hub(**fields)` add fields (transformers' card arguments and those of
    `TCSModelCardData`); every `save_model` and every push of a checkpoint writes the card with all of them, so that a
    field given once is on every later card. The card on the Hub, when the repo has one, is merged first so that what
    its owner wrote outside hf_tcs' section survives the push.
    """

    def __init__(self):
        self.fields: dict[str, Any] = {}

    def remember(self, **fields) -> None:
        """Keep the fields that are not None for every later card; unknown fields are the caller's mistake: raise
        now, not at the next save."""
        merged = {**self.fields, **{key: value for key, value in fields.items() if value is not None}}
        TCSModelCardData.from_fields(**merged)
        self.fields = merged

    def write(self, trainer, output_dir: str) -> None:
        """Render the card of `trainer` into `output_dir`; a failure is logged, never raised (a card must not stop
        training)."""
        try:
            existing = None
            if trainer.hub_model_id is not None:  # published card first, so edits made on the Hub survive the push
                existing = published_card(
                    trainer.hub_model_id, revision=trainer.args.hub_revision, token=trainer.args.hub_token
                )
            save_model_card(TCSModelCardData.from_trainer(trainer, **self.fields), output_dir, existing)
        except Exception as error:
            logger.warning(f"hf_tcs could not write the model card in {output_dir}: {type(error).__name__}: {error}")


def published_card(
    repo_id: str, *, repo_type: str = "model", revision: str | None = None, token: str | None = None
) -> str | None:
    """The text of the README.md on the Hub, or None when the repo, revision or file does not exist yet."""
    try:
        path = HfApi().hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=revision, token=token)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return None
    return Path(path).read_text(encoding="utf-8")


def save_model_card(data: TCSModelCardData, output_dir: str | os.PathLike, existing: str | None = None) -> ModelCard:
    """Write `README.md` and the two plots into `output_dir`; return the card.

    `existing` is the text of the card already published (e.g. the Hub's README); when not given, an existing
    `output_dir/README.md` is used. Either way that card is updated, not overwritten: hf_tcs replaces its own section
    and metadata keys and keeps everything else, and the user text of a local README is added to a published one.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    readme = output_dir / "README.md"
    local = readme.read_text(encoding="utf-8") if readme.is_file() else None
    if existing is None:
        existing, local = local, None
    if data.eigenvalues:
        _spectrum_plot(data, output_dir / SPECTRUM_PLOT)
    if data._shows_tailoring:
        _active_plot(data, output_dir / ACTIVE_PLOT)
    card = data.render()
    if existing:
        card = merge_card(existing, card)
    if local is not None:
        card = merge_user_text(card, local)  # edits of the local README survive next to those made on the Hub
    card.save(readme)
    return card


def merge_user_text(card: RepoCard, other: str) -> RepoCard:
    """`card` with the user text (outside hf_tcs' section) of another version of it, `other`, added: nothing of
    either is lost.

    Above and below the section, the paragraphs of `other` that `card` lacks are appended to `card`'s own, in order
    (a paragraph edited in both versions appears in both forms; one in both, such as the template's limitations
    text, appears once). Metadata and hf_tcs' section stay `card`'s.
    """
    text = card.text
    if GENERATED_START not in text or GENERATED_END not in text:
        return card
    other_body = type(card)(other, ignore_metadata_errors=True).text
    if GENERATED_START in other_body and GENERATED_END in other_body:
        other_above = other_body[: other_body.index(GENERATED_START)]
        other_below = other_body[other_body.index(GENERATED_END) + len(GENERATED_END) :]
    else:
        other_above, other_below = "", other_body
    start, end = text.index(GENERATED_START), text.index(GENERATED_END) + len(GENERATED_END)
    above = _union_paragraphs(text[:start], other_above)
    below = _union_paragraphs(text[end:], other_below)
    merged = (f"\n{above}\n\n" if above else "\n") + text[start:end] + (f"\n\n{below}\n" if below else "\n")
    return type(card)(f"---\n{card.data.to_yaml()}\n---\n{merged}")


def _paragraphs(text: str) -> list[str]:
    return [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


def _union_paragraphs(text: str, other: str) -> str:
    paragraphs = _paragraphs(text)
    paragraphs += [block for block in _paragraphs(other) if block not in paragraphs]
    return "\n\n".join(paragraphs)


def merge_card(existing: str, generated: RepoCard) -> RepoCard:
    """Put a generated card's section and metadata into an existing card, keeping the rest of its text and metadata.

    Works for model and dataset cards alike (the result has the generated card's class). Tags are united; hf_tcs'
    keys replace the old values; an old card without hf_tcs' section gets it on top, its own text kept below.
    """
    card_cls = type(generated)
    old = card_cls(existing, ignore_metadata_errors=True)
    metadata = old.data.to_dict()
    new = generated.data.to_dict()
    tags = list(dict.fromkeys([*(metadata.get("tags") or []), *(new.get("tags") or [])]))
    metadata.update({key: value for key, value in new.items() if value is not None}, tags=tags)
    section = generated.text[generated.text.index(GENERATED_START) : generated.text.index(GENERATED_END)]
    body = old.text
    if GENERATED_START in body and GENERATED_END in body:
        body = body[: body.index(GENERATED_START)] + section + body[body.index(GENERATED_END) :]
    else:
        body = f"\n{section}{GENERATED_END}\n\n{body.lstrip()}"
    yaml = type(generated.data)(**metadata, ignore_metadata_errors=True).to_yaml()
    return card_cls(f"---\n{yaml}\n---\n{body}")


# ---- What goes into the card -----------------------------------------------------------------------------------


def _user_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    for ignored in ("tasks", "dataset_args"):
        kwargs.pop(ignored, None)
    if "finetuned_from" in kwargs:
        kwargs["base_model"] = kwargs.pop("finetuned_from")
    datasets = kwargs.pop("dataset", None) or kwargs.pop("dataset_tags", None)
    kwargs.pop("dataset_tags", None)
    if datasets:
        kwargs["datasets"] = [datasets] if isinstance(datasets, str) else list(datasets)
    if isinstance(kwargs.get("tags"), str):
        kwargs["tags"] = [kwargs["tags"]]
    names = {f.name for f in dataclasses.fields(TCSModelCardData)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"Unknown model card fields {unknown}; the card takes {sorted(names)}.")
    return kwargs


def teacher_family(teacher_info: dict[str, Any]) -> str | None:
    """The teacher's model family (`dinov2`, `minilm`, ...), as the card's `teacher-<family>` tag names it."""
    text = f"{teacher_info.get('teacher', '')} {teacher_info.get('teacher_class', '')}".lower()
    return next((family for family in _TEACHER_FAMILIES if family in text), None)


def card_tags(teacher_info: dict[str, Any], extra: list[str] = ()) -> list[str]:
    """The tags of a card: hf_tcs' own (`TAGS`), the teacher family's (`teacher-dinov2`, ...), then `extra`."""
    family = teacher_family(teacher_info)
    return list(dict.fromkeys([*TAGS, *([f"teacher-{family}"] if family else []), *extra]))


def _dataset_ids(dataset) -> list[str]:
    """Hub ids a `datasets.Dataset` was downloaded from (none for local files or in-memory data)."""
    info = getattr(dataset, "info", None)
    if info is None or (info.builder_name or "") in _PACKAGED_BUILDERS | {""}:
        found = set()
    else:
        found = {info.dataset_name} if info.dataset_name and "/" in info.dataset_name else set()
    for url in getattr(info, "download_checksums", None) or {}:
        match = re.search(r"(?:hf://datasets/|/datasets/)([\w.-]+/[\w.-]+?)(?:@|/resolve/)", url)
        if match:
            found.add(match.group(1))
    return sorted(found)


def _non_default_arguments(args) -> dict[str, Any]:
    """The training arguments that differ from a fresh config's, minus storage / reporting / secret ones."""
    # Defaults from the dataclass fields: building a second config would reset the running Accelerator's state.
    defaults = {
        f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(args)
    }
    defaults["accelerator_config"] = AcceleratorConfig().to_dict()  # None means these
    changed = {}
    for name, value in args.to_dict().items():
        if name in _NOT_HYPERPARAMETERS or "token" in name or _same(value, defaults.get(name)):
            continue
        changed[name] = value
    return changed


def _same(value: Any, default: Any) -> bool:
    """Equal as settings: None, False and empty values alike; a dict by the keys it has."""
    if isinstance(value, dict) and isinstance(default, dict):
        return all(default.get(key) == item for key, item in value.items())
    return value == default or not (value or default)


# The columns of the card's training log: logged key, column title.
_LOG_COLUMNS = (
    ("loss", "Training Loss (total)"),
    ("ce_loss", "Cross-Entropy"),
    ("tcs_loss", "Coordinate Loss"),
    ("lsh_loss", "eLSH Loss"),
    ("eval_loss", "Validation Loss"),
    ("eval_accuracy", "Accuracy"),
)


def _log_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step: the training loss and its terms, evaluation loss and metrics, active coordinates.

    The training loss is the weighted sum of cross-entropy and the coordinate (and eLSH) losses: each term gets its
    own column, so that the log shows which one moves.
    """
    rows: dict[int, dict[str, Any]] = {}
    for entry in history:
        if "train_runtime" in entry:
            continue
        row = rows.setdefault(entry.get("step", 0), {"Epoch": _format(entry.get("epoch")), "Step": entry.get("step")})
        row.update({title: _format(entry[key]) for key, title in _LOG_COLUMNS if key in entry})
        if "tcs_active_coordinates" in entry:
            row["Active Coordinates"] = int(entry["tcs_active_coordinates"])
    return [rows[step] for step in sorted(rows)]


def _final_evaluation(history: list[dict[str, Any]]) -> dict[str, float]:
    entry = next((entry for entry in reversed(history) if "eval_loss" in entry), {})
    return {
        key.removeprefix("eval_"): value
        for key, value in entry.items()
        if key.startswith("eval_") and not key.endswith(_NOT_RESULTS) and isinstance(value, (int, float))
    }


def _cost(trainer, history: list[dict[str, Any]], seconds: float | None) -> dict[str, str]:
    import torch

    cost = {}
    if seconds is not None:
        cost["Teacher pass (one-off, before training; near 0 when served from the cache)"] = f"{seconds:.1f} s"
    summary = next((entry for entry in reversed(history) if "train_runtime" in entry), None)
    if summary:
        cost["Training time"] = (
            f"{summary['train_runtime']:.1f} s ({summary.get('train_steps_per_second', 0):g} steps/s)"
        )
    cost["Teacher in memory during training"] = "no"
    device = trainer.args.device
    if device.type == "cuda" and torch.cuda.is_available():
        cost["Peak GPU memory (allocated)"] = f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB"
        cost["Hardware"] = f"{trainer.args.world_size} x {torch.cuda.get_device_name(device)}"
    else:
        # ru_maxrss is KiB on Linux, bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
        cost["Peak process memory (RSS)"] = f"{peak:,.0f} MiB"
        cost["Hardware"] = f"{trainer.args.world_size} x CPU process ({os.cpu_count()} cores, {platform.machine()})"
    return cost


def _versions() -> dict[str, str]:
    versions = {"Python": platform.python_version()}
    for package in ("hf_tcs", "transformers", "torch", "datasets", "accelerate", "timm", "huggingface_hub"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _label_list(names: list[str], shown: int = 4) -> str:
    """`The 77 labels: activate_my_card, age_limit, ... (config.json's id2label)`, for the usage snippet."""
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"The {len(names)} labels: {listed} (config.json's id2label)"


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(":---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(row.get(column, "-")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


# ---- Plots -------------------------------------------------------------------------------------------------------


def _spectrum_plot(data: TCSModelCardData, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in the background push thread

    # Trailing eigenvalues are often numerically zero: floor them so that the log axis shows the spectrum.
    floor = max(float(np.max(data.eigenvalues)), np.finfo(float).tiny) * 1e-6
    eigenvalues = np.maximum(np.asarray(data.eigenvalues), floor)
    ranks = np.arange(1, len(eigenvalues) + 1)
    k = data.num_components or len(eigenvalues)
    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    axes.semilogy(ranks, eigenvalues, color="0.6", label="all components")
    axes.semilogy(ranks[:k], eigenvalues[:k], color="C0", lw=2, label=f"kept (k={k})")
    axes.set_ylim(bottom=floor)
    if data.active_coordinates and data.active_coordinates[-1][1] < k:
        axes.axvline(data.active_coordinates[-1][1], color="C1", ls="--", label="active after tailoring")
    axes.set(xlabel="component", ylabel="eigenvalue (feature variance)", title="Teacher feature spectrum")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def _active_plot(data: TCSModelCardData, path: Path) -> None:
    from matplotlib.figure import Figure

    steps, active = zip(*data.active_coordinates, strict=True)
    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    axes.step(steps, active, where="post", color="C0")
    axes.set(xlabel="training step", ylabel="active coordinates", title="Tailoring of the coordinate system")
    axes.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path)
