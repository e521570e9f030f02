"""CIFAR-10 with a ViT teacher: the arms of bench_banking77.py on real images, and what each costs.

What it measures: test accuracy (mean ± sample std over seeds), training wall time, time per step and peak memory of a
small ViT student trained from scratch (hidden 192, 6 layers, 3 heads, patch 4 at the native 32 px: 2.7 M parameters;
it sees its own normalised 32 px view, no augmentation) in the arms `ce`, `tcs`, `tcs_weight_2`, `tailoring_task`,
`random_basis` and `online_kd` (definitions in bench_banking77.py; for `online_kd` the teacher encodes every batch's
raw images through its own preprocessing, e.g. 224 px, exactly as in the teacher pass), with the same budget in every
arm (3 epochs, batch 64, AdamW lr 1e-3, weight decay 0.05); the teacher's linear probe and the one-off teacher pass
over the training images (cache bypassed) are reported apart.

The teacher: `--teacher_dir`, a local folder `load_teacher` reads (DINO / DINOv2 / MAE saved with `save_pretrained`
together with its image processor, or a timm `save_for_hf` folder): real pretrained weights, real accuracies. Without
it, a randomly initialised DINO-ViT-S/16-shaped teacher (12 layers, hidden 384, 6 heads, 224 px, 21.7 M parameters):
the output is then labelled `"cost_only": true` and written to bench_cifar10_random_teacher.json, since its
accuracies mean nothing; its costs (teacher pass, online KD's step time and memory) are those of the real model.

Images: `--data_dir`, a folder of `train-*.parquet` / `test-*.parquet` files (columns `image`, `label`; default
../shared/data/cifar10, the layout of its README) or one parquet file (split 80/20 per class), or `--image_folder`
(a datasets `imagefolder`: `train/<class>/*.png`, `test/<class>/*.png`); `--max_train_samples` /
`--max_test_samples` take a fixed random subset (seed 0).

How: as bench_banking77.py (its harness): the splits (student pixels, raw images, teacher features) are prepared once,
every arm x seed runs in a fresh subprocess (its own peak RSS; online KD's includes the teacher), results go to the
JSON after every run, `--resume` keeps the runs of an existing file with the same settings.

Usage:
    python benchmarks/bench_cifar10.py --resume [--teacher_dir DIR] [--seeds 0] [--epochs 3]
        [--max_train_samples 1000] [--max_test_samples 1000] [--arms ce tcs tcs_weight_2 tailoring_task random_basis
        online_kd] [--data_dir DIR | --image_folder DIR] [--output FILE] [--in_process]
Expected duration on 2 CPU cores (defaults, ViT-S/16 teacher at 224 px): about 2 min of teacher pass (train and test
images) and probe, 30 s per TCS / CE run, 3.5 min for the online-KD run: about 9 min. With a real teacher, e.g.
`--teacher_dir dino-vits16 --seeds 0 1 2 --max_train_samples 5000 --epochs 5`: about 2 h (online KD: 25 min a seed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import bench_banking77 as harness  # the harness: data, jobs, merging, summaries
import datasets
from bench_train_step import TEACHERS, peak_rss_mb, vit_config
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from hf_tcs import TCSConfig, TCSDistillationTrainer

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
)
# The training recipe of every arm (a small ViT from scratch on a few thousand images), on the CPU.
RECIPE = {
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 256,
    "learning_rate": 1e-3,
    "weight_decay": 0.05,
    "warmup_steps": 0.1,
    "lr_scheduler_type": "linear",
    "logging_steps": 50,
    "save_strategy": "no",
    "report_to": "none",
    "use_cpu": True,
    "dataloader_num_workers": 0,
    "disable_tqdm": True,
}
# DINO's preprocessing (facebook/dino-vits16): 224 px, bicubic, ImageNet mean and std.
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


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
    import torch
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


def student_processor(image_size: int) -> ViTImageProcessor:
    return ViTImageProcessor(size={"height": image_size, "width": image_size})


def make_student(job: dict, num_labels: int, seed: int) -> ViTForImageClassification:
    """A small ViT from a config (random init)."""
    import torch

    torch.manual_seed(seed)
    hidden = job["student_hidden_size"]
    config = ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=job["student_layers"],
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        image_size=job["image_size"],
        patch_size=4,
        num_labels=num_labels,
    )
    return ViTForImageClassification(config)


def run_job(job: dict) -> dict:
    """One arm x seed: train the ViT student on the saved splits and test it; time and memory of this process."""
    splits = datasets.load_from_disk(job["data"])
    baseline = peak_rss_mb()
    arm, seed = job["arm"], job["seed"]
    test = splits["test"].select_columns(["pixel_values", "label"]).with_format("torch")
    options, extra = {}, {}
    if arm == "online_kd":
        trainer_class, extra = harness.online_kd_trainer(job["teacher_path"], "image", splits["train"])
    else:
        splits, options = harness.arm_options(arm, splits, seed)
        trainer_class = TCSDistillationTrainer
        if "tcs_loss_weight" in harness.ARMS[arm]:
            extra["tcs_loss_weight"] = harness.ARMS[arm]["tcs_loss_weight"]
    train = splits["train"].with_format("torch", columns=["pixel_values", "label"], output_all_columns=True)
    output_dir = tempfile.TemporaryDirectory()
    budget = {"num_train_epochs": job["epochs"], "max_steps": job["max_steps"] or -1}
    args = TCSConfig(output_dir=output_dir.name, seed=seed, data_seed=seed, **budget, **RECIPE, **options)
    timer = harness.StepTimer()
    student = make_student(job, splits["train"].features["label"].num_classes, seed)
    trainer = trainer_class(model=student, args=args, train_dataset=train, eval_dataset=test, callbacks=[timer])
    with output_dir:
        result = trainer.train()
        metrics = trainer.evaluate()
    head = getattr(trainer, "tcs_head", None)
    return {
        "test_accuracy": metrics["eval_accuracy"],
        "train_runtime_s": result.metrics["train_runtime"],
        "seconds_per_step": result.metrics["train_runtime"] / max(trainer.state.global_step, 1),
        "active_coordinates": head.num_active if head is not None else None,
        **harness.step_timing(timer),
        **harness.memory_since(baseline),
        **extra,
    }


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher_dir", default=None, help="Local teacher folder; default: random DINO ViT-S/16.")
    parser.add_argument("--random_teacher_size", default="vit-s", choices=list(TEACHERS), help=argparse.SUPPRESS)
    parser.add_argument("--random_teacher_image_size", type=int, default=224, help=argparse.SUPPRESS)
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="train-*.parquet + test-*.parquet, or one file.")
    parser.add_argument("--image_folder", default=None, help="A datasets imagefolder with train/ and test/.")
    parser.add_argument("--max_train_samples", type=int, default=1000)
    parser.add_argument("--max_test_samples", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max_steps", type=int, default=None, help="Optimizer steps per run instead of --epochs.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=harness.DEFAULT_ARMS, choices=list(harness.ARMS))
    parser.add_argument("--image_size", type=int, default=32, help="The student's input size.")
    parser.add_argument("--student_hidden_size", type=int, default=192)
    parser.add_argument("--student_layers", type=int, default=6)
    parser.add_argument("--output", default=None)
    parser.add_argument("--resume", action="store_true", help="Keep the runs of --output; run only the missing ones.")
    parser.add_argument(
        "--in_process", action="store_true", help="No subprocess per run (tests): memory not isolated."
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job file in this process
    args = parser.parse_args(argv)
    if args.job:
        return harness.run_job_file(args.job, run_job)
    cost_only = args.teacher_dir is None
    name = "bench_cifar10_random_teacher.json" if cost_only else "bench_cifar10.json"
    output = Path(args.output or harness.RESULTS / name)

    with tempfile.TemporaryDirectory() as workspace:
        workspace = Path(workspace)
        if cost_only:
            size, pixels = args.random_teacher_size, args.random_teacher_image_size
            teacher_path = random_dino_teacher(workspace / "teacher", size, pixels)
            teacher_name = f"random-init DINO-{size.removeprefix('vit-').upper()}/16-shaped ViT, {pixels} px"
        else:
            teacher_path = teacher_name = args.teacher_dir
        splits = load_images(args)
        splits, teacher_pass, teacher = harness.timed_teacher_pass(splits, teacher_path, 32, fresh=True)
        probe_accuracy = harness.teacher_probe(splits["train"], splits["test"])
        processor = student_processor(args.image_size)
        splits = splits.map(
            lambda batch: {"pixel_values": processor(images=batch["image"], return_tensors="np")["pixel_values"]},
            batched=True,
            desc="Student pixels",
        )
        splits.save_to_disk(workspace / "splits")

        student = (
            f"ViT, hidden {args.student_hidden_size}, {args.student_layers} layers, patch 4, {args.image_size} px"
        )
        settings = {
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            "train_examples": len(splits["train"]),
            "test_examples": len(splits["test"]),
            "teacher": str(teacher_name),
            "teacher_weights": teacher["weights"],
            "cost_only": cost_only,
            "data": str(args.image_folder or args.data_dir),
            "student": student,
            "batch_size": RECIPE["per_device_train_batch_size"],
            "recipe": RECIPE,
            "device": "cpu",
        }
        command = harness.command_line(__file__, argv)
        report = harness.open_report(output, "cifar10", command, settings, COMPARED_SETTINGS, args.resume)
        report["settings"]["seeds"] = sorted(set(report["settings"].get("seeds", [])) | set(args.seeds))
        report |= {
            "cost_only": cost_only,
            "arms": harness.ARM_LABELS,
            "teacher": teacher,
            "teacher_probe_accuracy": probe_accuracy,
            "teacher_pass_s": teacher_pass["seconds"],
            "teacher_pass": teacher_pass,
        }
        common = {
            "data": str(workspace / "splits"),
            "teacher_path": str(teacher_path),
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            "image_size": args.image_size,
            "student_hidden_size": args.student_hidden_size,
            "student_layers": args.student_layers,
        }
        jobs = [{"arm": arm, "seed": seed, **common} for seed in args.seeds for arm in args.arms]
        harness.run_jobs(
            report, jobs, ("arm", "seed"), output, Path(__file__), run_job, harness.summarise_runs, args.in_process
        )

    if cost_only:
        print("\nCOST ONLY: random teacher, the accuracies mean nothing")
    harness.print_summary(report, output)
    return report


if __name__ == "__main__":
    main()
