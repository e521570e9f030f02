"""`TCSConfig`: the training arguments of `TCSDistillationTrainer`, a `TrainingArguments` subclass."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .columns import COORDINATE_COLUMN, FEATURE_COLUMN

__all__ = ["TCSConfig", "count_or_share"]

_TARGET_SCALINGS = ("global", "none", "standardize")
_SELECTION_STRATEGIES = ("no", "epoch", "steps")
_IMPORTANCE_LOSSES = ("task", "total")
_TEACHER_DTYPES = ("float32", "bfloat16", "float16")
_PROJECTOR_INITS = ("random", "least_squares")


@dataclass
class TCSConfig(TrainingArguments):
    r"""
    Configuration for [`TCSDistillationTrainer`]: every [`~transformers.TrainingArguments`] field plus the ones below.

    Parameters:
        > Parameters that control the teacher pass (only used when the training set has no teacher features)

        teacher_model_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Hub id or local folder of the teacher. When set and the training set has neither the feature nor the
            coordinate column, the trainer runs the teacher pass itself: once, each process of a multi-process run
            on its own shard of the training set.
        teacher_revision (`str` or `None`, *optional*, defaults to `None`):
            Hub revision (branch, tag or commit) of the teacher.
        teacher_hub_id (`str` or `None`, *optional*, defaults to `None`):
            When `teacher_model_name_or_path` is a local copy of a Hub model: its Hub id (`namespace/name`), recorded
            as the teacher in the coordinate system and the model card instead of the folder (see
            `load_teacher(hub_id=...)`).
        teacher_pooling (`str`, *optional*, defaults to `"auto"`):
            How the teacher's feature is read; see `hf_tcs.load_teacher`.
        teacher_input_column (`str` or `None`, *optional*, defaults to `None`):
            Column fed to the teacher (the image or text column); detected when `None`.
        teacher_batch_size (`int`, *optional*, defaults to `64`):
            Batch size of the teacher pass.
        teacher_dtype (`str`, *optional*, defaults to `"float32"`):
            Precision the teacher runs in during the teacher pass: `"float32"`, `"bfloat16"` (half the memory and,
            on GPUs with bfloat16 support, about half the time) or `"float16"` (may overflow to inf in some models).
            The features are stored as float32 whatever it is; each dtype gets its own feature cache.

        > Parameters that control the coordinate system

        tcs_num_components (`int`, `float` or `None`, *optional*, defaults to `0.95`):
            Coordinates kept from the teacher's PCA: an int is a count (`1`, `64`), a float in (0, 1) a share of
            explained variance (`0.95`), `None` keeps all of them. The same rule holds in Python, in a YAML config and
            on the command line (`--tcs_num_components 1` is one coordinate); `1.0` is refused as ambiguous.
        tcs_target_scaling (`str`, *optional*, defaults to `"global"`):
            How the teacher coordinates are scaled into targets: `"global"` (one scalar making the mean variance
            over all D components 1; the spectrum is kept), `"none"` (literal coordinates) or `"standardize"` (each
            coordinate by its own standard deviation, i.e. whitening).
        tcs_feature_column (`str`, *optional*, defaults to `"teacher_features"`):
            Column holding the teacher's features.
        tcs_coordinate_column (`str`, *optional*, defaults to `"tcs_coordinates"`):
            Column holding the teacher's coordinates (added by the trainer when only features are given).

        > Parameters that control the unlabelled pool (only used with `TCSDistillationTrainer(unlabeled_dataset=...)`)

        tcs_unlabeled_ratio (`float`, *optional*, defaults to `1.0`):
            Unlabelled examples per labelled example in every batch: each micro-batch of
            `per_device_train_batch_size` labelled examples is joined by `round(ratio x per_device_train_batch_size)`
            (at least 1) examples of the pool, so every optimizer step takes a labelled batch of the usual size
            *and* an unlabelled one. Being a ratio, it keeps 1 x B, 2 x B/2 (gradient accumulation) and 2 processes
            x B/2 equal (exactly so when ratio x each micro-batch size is a whole number). An epoch stays an epoch
            of the labelled set; the pool is cycled, reshuffled at each pass.
        tcs_fit_on_unlabeled (`bool`, *optional*, defaults to `True`):
            Fit the coordinate system on the features of the labelled examples and the pool (with few labels the
            PCA needs the pool: there may be fewer labelled examples than feature dimensions); `False` fits it on
            the labelled examples only. Ignored when a coordinate system or a coordinate column is given.

        > Parameters that control the loss

        tcs_loss_weight (`float`, *optional*, defaults to `4.0`):
            Weight of the coordinate loss next to cross-entropy. The coordinate loss is the squared error summed over
            the active coordinates divided by the teacher's feature dimension D, so a weight means the same whatever
            the number of kept or active coordinates. `0` trains with plain cross-entropy (no TCS head).
        tcs_lsh_weight (`float`, *optional*, defaults to `0.0`):
            Weight of the optional eLSH hash loss on the coordinates (`0` disables it).
        tcs_lsh_bits (`int` or `None`, *optional*, defaults to `None`):
            Number of random hyperplanes of the eLSH loss; 4 x the number of coordinates when `None`.
        tcs_projector_init (`str`, *optional*, defaults to `"random"`):
            How the TCS head's projector (student features -> coordinates) starts: `"random"` (PyTorch's default
            init, as the paper's) or `"least_squares"` (at the start of `train()`, the ridge least-squares map from
            the student's features on up to 4,096 training examples to their teacher coordinates, its penalty chosen
            on held-out examples; see `hf_tcs.student.fit_projector`). For pretrained students fine-tuned at a small
            learning rate; a student from scratch has no features that predict the coordinates yet, and keeps its
            random projector (with a warning).

        > Parameters that control tailoring (the iterative selection of coordinates)

        tcs_selection_strategy (`str`, *optional*, defaults to `"no"`):
            When selection steps happen: `"no"` (keep every coordinate), `"epoch"` (at the end of each epoch) or
            `"steps"` (every `tcs_selection_steps` optimizer steps).
        tcs_selection_steps (`float`, *optional*, defaults to `0.1`):
            With `"steps"`: optimizer steps between selection steps, an integer, or a float in (0, 1) read as a
            share of the total training steps (as `eval_steps` is).
        tcs_selection_rounds (`int`, *optional*, defaults to `3`):
            How many selection steps happen at most; they all come early in training.
        tcs_drop_ratio (`float`, *optional*, defaults to `0.2`):
            Share of the still-active coordinates dropped, for good, at each selection step.
        tcs_min_components (`int`, *optional*, defaults to `16`):
            Floor: tailoring never leaves fewer active coordinates than this.
        tcs_importance_loss (`str`, *optional*, defaults to `"task"`):
            The loss whose gradient measures a coordinate's importance: `"task"` (cross-entropy only) or
            `"total"` (cross-entropy plus the coordinate loss, which favours high-variance coordinates).
    """

    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local folder of the teacher, used to run the teacher pass when the training set has "
            "no teacher features."
        },
    )
    teacher_revision: str | None = field(default=None, metadata={"help": "Hub revision of the teacher."})
    teacher_hub_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id (namespace/name) of which the local teacher folder is a copy: the model card and the "
            "coordinate system name the teacher by it instead of by the folder."
        },
    )
    teacher_pooling: str = field(
        default="auto", metadata={"help": "Teacher pooling: auto, cls, mean, pooler (vision), max (text)."}
    )
    teacher_input_column: str | None = field(
        default=None, metadata={"help": "Column fed to the teacher; detected when not set."}
    )
    teacher_batch_size: int = field(default=64, metadata={"help": "Batch size of the teacher pass."})
    teacher_dtype: str = field(
        default="float32",
        metadata={"help": "Teacher precision in the teacher pass: float32, bfloat16 or float16 (features: float32)."},
    )

    tcs_num_components: float | None = field(
        default=0.95,
        metadata={
            "help": "Coordinates kept: an int is a count (1, 64), a float in (0, 1) a share of explained variance "
            "(0.95), 'all' keeps every one; 1.0 is refused as ambiguous."
        },
    )
    tcs_target_scaling: str = field(
        default="global",
        metadata={"help": "Target scaling: global (mean variance 1, spectrum kept), none, or standardize."},
    )
    tcs_feature_column: str = field(default=FEATURE_COLUMN, metadata={"help": "Teacher feature column."})
    tcs_coordinate_column: str = field(default=COORDINATE_COLUMN, metadata={"help": "Teacher coordinate column."})

    tcs_unlabeled_ratio: float = field(
        default=1.0,
        metadata={
            "help": "Unlabelled pool examples per labelled example in every batch (with unlabeled_dataset): each "
            "micro-batch gets round(ratio x per_device_train_batch_size) of them."
        },
    )
    tcs_fit_on_unlabeled: bool = field(
        default=True,
        metadata={"help": "Fit the coordinate system on labelled + unlabelled features (False: labelled only)."},
    )

    tcs_loss_weight: float = field(
        default=4.0,
        metadata={
            "help": "Weight of the coordinate loss (squared error on active coordinates / D); 0 = cross-entropy only."
        },
    )
    tcs_lsh_weight: float = field(default=0.0, metadata={"help": "Weight of the optional eLSH loss; 0 disables it."})
    tcs_lsh_bits: int | None = field(
        default=None, metadata={"help": "eLSH hyperplanes; 4 x the number of coordinates when unset."}
    )

    tcs_projector_init: str = field(
        default="random",
        metadata={
            "help": "TCS projector init: random, or least_squares (fitted to the teacher coordinates on the "
            "student's initial features; for pretrained students)."
        },
    )

    tcs_selection_strategy: str = field(
        default="no", metadata={"help": "When coordinates are selected: no, epoch or steps."}
    )
    tcs_selection_steps: float = field(
        default=0.1,
        metadata={"help": "With steps: optimizer steps between selections, or a share of training if in (0, 1)."},
    )
    tcs_selection_rounds: int = field(default=3, metadata={"help": "Maximum number of selection steps."})
    tcs_drop_ratio: float = field(
        default=0.2, metadata={"help": "Share of the active coordinates dropped at each selection step."}
    )
    tcs_min_components: int = field(default=16, metadata={"help": "Minimum number of active coordinates."})
    tcs_importance_loss: str = field(
        default="task", metadata={"help": "Loss measuring coordinate importance: task (cross-entropy) or total."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.tcs_num_components = count_or_share(self.tcs_num_components)
        for name in ("tcs_loss_weight", "tcs_lsh_weight", "tcs_drop_ratio", "tcs_selection_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name}={value!r}: use a finite number.")
        for name, allowed in (
            ("tcs_target_scaling", _TARGET_SCALINGS),
            ("tcs_selection_strategy", _SELECTION_STRATEGIES),
            ("tcs_importance_loss", _IMPORTANCE_LOSSES),
            ("teacher_dtype", _TEACHER_DTYPES),
            ("tcs_projector_init", _PROJECTOR_INITS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: use one of {allowed}.")
        for name in ("tcs_loss_weight", "tcs_lsh_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} is negative: use 0 to disable that loss.")
        if not self.tcs_unlabeled_ratio > 0:
            raise ValueError(
                f"tcs_unlabeled_ratio={self.tcs_unlabeled_ratio}: use a positive number of unlabelled examples per "
                "labelled one (e.g. 1.0), or train without `unlabeled_dataset`."
            )
        if not 0 < self.tcs_drop_ratio < 1:
            raise ValueError(f"tcs_drop_ratio={self.tcs_drop_ratio}: use a share in (0, 1), e.g. 0.2.")
        if self.tcs_min_components < 1:
            raise ValueError(f"tcs_min_components={self.tcs_min_components}: keep at least 1 coordinate.")
        k = self.tcs_num_components
        tailoring = self.tcs_selection_strategy != "no" and self.tcs_selection_rounds > 0
        if tailoring and isinstance(k, int) and self.tcs_min_components > k:
            raise ValueError(
                f"tcs_min_components={self.tcs_min_components} is above tcs_num_components={k}: tailoring could never "
                f"drop a coordinate. Lower tcs_min_components below {k}, keep more components, or set "
                "tcs_selection_strategy='no'."
            )
        if self.tcs_selection_rounds < 0:
            raise ValueError(f"tcs_selection_rounds={self.tcs_selection_rounds}: use 0 or more.")
        steps = self.tcs_selection_steps
        if self.tcs_selection_strategy == "steps" and (steps <= 0 or (steps >= 1 and steps != int(steps))):
            raise ValueError(
                f"tcs_selection_steps={steps}: use a whole number of steps, or a share of training in (0, 1)."
            )
        if self.tcs_lsh_bits is not None and self.tcs_lsh_bits < 1:
            raise ValueError(f"tcs_lsh_bits={self.tcs_lsh_bits}: use a positive number of hash bits, or None.")


def count_or_share(value: int | float | str | None) -> int | float | None:
    """Read `tcs_num_components` by one rule on every route (Python, YAML, command line).

    An int (or a string of one: `"64"`) is a count of coordinates; a float in (0, 1) is a share of explained
    variance; a whole float above 1 (`64.0`) is a count; `None`, `"all"` or `"none"` keep every coordinate. `1.0` is
    refused: it reads as both 1 coordinate and 100 % of the variance.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("all", "none"):
            return None
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(
                    f"tcs_num_components={value!r}: use an int count (e.g. 64), a share in (0, 1) (e.g. 0.95), or "
                    "'all'."
                ) from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"tcs_num_components={value!r}: use an int count, a float share in (0, 1), or None for all.")
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ValueError(f"tcs_num_components={value}: a count must be at least 1 (or use None for all).")
        return int(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"tcs_num_components={value}: use an int count, a float share in (0, 1), or None for all.")
    if value == 1:
        raise ValueError(
            "tcs_num_components=1.0 is ambiguous (1 coordinate, or 100 % of the variance?): pass the int 1 for one "
            "coordinate, or None ('all') to keep every coordinate."
        )
    if value > 1:
        if value != int(value):
            raise ValueError(f"tcs_num_components={value}: a count must be a whole number; a share must be in (0, 1).")
        return int(value)
    return float(value)
