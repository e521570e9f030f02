"""Build the classification student of a TCS job from one name: a Hub id or folder, an architecture, or a timm model.

`load_student` reads the name the way a user means it:

- a local folder or a Hub id (`facebook/deit-tiny-patch16-224`, `timm/resnet18.a1_in1k`): pretrained weights with a
  new classifier for the task's labels (`ignore_mismatched_sizes=True`);
- a transformers architecture (`vit`, `bert`, ... any `model_type`): random init from `AutoConfig.for_model`, sized by
  `--student_config` overrides, with the input size / vocabulary of the processor it will be fed with;
- a timm architecture (`resnet18`, `vit_tiny_patch16_224`): random init inside transformers'
  `TimmWrapperForImageClassification` (so that it saves and loads as a plain transformers model), `--student_config`
  going to `timm.create_model`. Pretrained timm weights come from the Hub id, `timm/<name>`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from huggingface_hub import constants as hub_constants
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from .data import image_size
from .labels import label_config
from .names import parse_model_name

__all__ = ["StudentArguments", "load_processor", "load_student"]


@dataclass
class StudentArguments:
    """The student, and how its inputs are made."""

    student_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The student: a Hub id or local folder (pretrained, new classifier), a transformers architecture "
            "such as vit or bert (random init, sized by --student_config), or a timm architecture such as resnet18 "
            "(random init; pretrained timm weights are the Hub id timm/<name>)."
        },
    )
    student_config: dict | str | None = field(
        default=None,
        metadata={
            "help": 'JSON config overrides, e.g. \'{"hidden_size": 192, "num_hidden_layers": 6}\': of the '
            "transformers config, or the timm.create_model arguments of a timm architecture."
        },
    )
    student_revision: str | None = field(default=None, metadata={"help": "Hub revision of the student."})
    processor_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Image processor or tokenizer of the student; by default the student's own (Hub id or folder), "
            "else the teacher's (architecture names)."
        },
    )
    augment: bool = field(
        default=False,
        metadata={
            "help": "Augment the student's training images (random resized crop + horizontal flip); the teacher's "
            "coordinates stay those of the clean images."
        },
    )
    max_length: int | None = field(
        default=128,
        metadata={"help": "Tokens kept per text for the student (capped by its position embeddings)."},
    )

    def __post_init__(self):
        if self.student_model_name_or_path is None:
            raise ValueError(
                "--student_model_name_or_path is required: a Hub id or folder, an architecture (vit, bert, ...) "
                "or a timm model name."
            )
        if isinstance(self.student_config, str):
            try:
                self.student_config = json.loads(self.student_config)
            except json.JSONDecodeError as error:
                raise ValueError(f"--student_config is not valid JSON ({error}): {self.student_config!r}.") from error
        if self.student_config is not None and not isinstance(self.student_config, dict):
            raise ValueError(f"--student_config must be a JSON object of config values, got {self.student_config!r}.")


def load_student(
    name_or_path: str,
    *,
    modality: Literal["image", "text"],
    label_names: list[str],
    config_overrides: dict[str, Any] | None = None,
    revision: str | None = None,
    processor: Any = None,
) -> PreTrainedModel:
    """A `*ForImageClassification` / `*ForSequenceClassification` student for `label_names`.

    Args:
        name_or_path: Hub id, local folder, transformers `model_type` or timm architecture (see the module docstring).
        modality: `"image"` or `"text"`, the task's input.
        label_names: class names; they become the config's `id2label` / `label2id`.
        config_overrides: config values (or timm model arguments) replacing the defaults.
        revision: Hub revision of a pretrained student.
        processor: the image processor or tokenizer the student will be fed with; a student built from an
            architecture takes its input size or vocabulary from it unless `config_overrides` says otherwise.
    """
    overrides = dict(config_overrides or {})
    labels = label_config(label_names)
    auto_model = AutoModelForImageClassification if modality == "image" else AutoModelForSequenceClassification
    # Any name but an architecture (a folder, a Hub id, a path that transformers then reports) is pretrained weights.
    kind = parse_model_name(name_or_path).kind
    if kind == "timm_registry":
        from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

        if modality != "image":
            raise ValueError(f"{name_or_path!r} is a timm image model, but the task's input is {modality}.")
        return TimmWrapperForImageClassification(
            TimmWrapperConfig(architecture=name_or_path, model_args=overrides or None, **labels)
        )
    if kind == "architecture":
        config = AutoConfig.for_model(name_or_path, **labels, **overrides)
        _fit_inputs(config, processor, modality, set(overrides))
        return auto_model.from_config(config)
    config = AutoConfig.from_pretrained(name_or_path, revision=revision, **labels, **overrides)
    if isinstance(getattr(config, "model_args", None), dict):
        # timm's save_for_hf records num_classes among the model arguments, which TimmWrapper passes a second time.
        config.model_args = {key: value for key, value in config.model_args.items() if key != "num_classes"}
    return auto_model.from_pretrained(name_or_path, config=config, revision=revision, ignore_mismatched_sizes=True)


def _fit_inputs(config: Any, processor: Any, modality: str, overridden: set[str]) -> None:
    """Size a randomly initialised student for the inputs its processor makes."""
    if processor is None:
        return
    if modality == "text":
        if hasattr(config, "vocab_size") and "vocab_size" not in overridden:
            config.vocab_size = len(processor)
        if hasattr(config, "pad_token_id") and "pad_token_id" not in overridden:
            config.pad_token_id = processor.pad_token_id
    elif hasattr(config, "image_size") and "image_size" not in overridden:
        size = image_size(processor)
        config.image_size = size[0] if isinstance(size, tuple) and size[0] == size[1] else size


def load_processor(
    name_or_path: str,
    modality: Literal["image", "text"],
    revision: str | None = None,
    *,
    trust_remote_code: bool = False,
    hint: str | None = None,
) -> Any:
    """The image processor (image inputs) or tokenizer (text inputs) stored with a model, by Hub id or folder.

    The one loader of the student's and the teacher's processors, so that both fail with the same message: what could
    not be loaded, why, and the fix. `hint` is that fix for the caller's user; by default the student's: pass
    `--processor_name_or_path`, or, offline, local folders.
    """
    loader = AutoImageProcessor if modality == "image" else AutoTokenizer
    try:
        return loader.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        what = "image processor (preprocessor_config.json)" if modality == "image" else "tokenizer"
        if hint is None and hub_constants.HF_HUB_OFFLINE and parse_model_name(name_or_path).kind != "folder":
            hint = "the Hub is offline (HF_HUB_OFFLINE=1): pass local folders (save_pretrained copies) instead"
        elif hint is None:
            hint = f"pass --processor_name_or_path, a Hub id or folder holding the {what} to feed the student with"
        raise ValueError(f"Could not load the {what} of {name_or_path!r} ({error}): {hint}.") from error


def save_in_timm_format(model: PreTrainedModel, output_dir: str) -> None:
    """Rewrite a timm student's files in timm's own format, which both `timm.create_model("hf-hub:...")` and
    `AutoModelForImageClassification` load (transformers' `TimmWrapper` format is not loadable by timm)."""
    from timm.models import save_for_hf

    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    save_for_hf(model.timm_model, output_dir, model_config={"label_names": label_names}, safe_serialization=True)
    config_file = os.path.join(output_dir, "config.json")
    with open(config_file, encoding="utf-8") as file:
        config = json.load(file)
    # transformers passes num_classes itself and fails on a second one among the model arguments.
    (config.get("model_args") or {}).pop("num_classes", None)
    with open(config_file, "w", encoding="utf-8") as file:
        json.dump(config, file, indent=2)
