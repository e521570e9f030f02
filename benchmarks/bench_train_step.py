"""Cost of one training step: cross-entropy vs TCS (teacher-free) vs online feature distillation (teacher in the loop).

Same student, same batches, same optimizer (the `Trainer` default AdamW) in every arm:
- ``ce``: `TCSDistillationTrainer` with ``tcs_loss_weight=0`` (plain cross-entropy, no TCS head);
- ``tcs``: `TCSDistillationTrainer` with the default TCS settings on a training set that already carries a
  ``tcs_coordinates`` column (k coordinates from `CoordinateSystem.fit(...).add_coordinates(...)` over random
  384-d "teacher features"): no teacher in memory;
- ``kd-<teacher>``: the baseline TCS replaces, `online_kd.OnlineFeatureKDTrainer` (shared with the accuracy
  benchmarks): a frozen `ViTModel` teacher (eval mode, ``torch.no_grad()``) runs on every batch (the student's
  ``pixel_values``) and the MSE between a learnable ``Linear(d_student -> d_teacher)`` projection of the student's
  pooled (CLS) feature and the teacher's CLS feature is added to the cross-entropy.

The student is a randomly initialised ViT-Ti/16 shape (hidden 192, 12 layers, 3 heads, MLP 768; 10 classes); the
teachers are ViT-Ti/16, ViT-S/16 and ViT-B/16 shapes (hidden 192/384/768, 12 layers, 3/6/12 heads, MLP 4 x hidden),
at the same image size (112 px by default, so that the default run fits in ~8 minutes on 2 CPU cores; weights do not
matter for speed). The main comparison uses the ViT-S teacher; the other teachers show how the cost of online
distillation grows with the teacher while TCS does not depend on it.

Step time: `TrainerCallback` timestamps; ``step`` is the time between consecutive ``on_step_end`` calls (batch loading
and collation, forward, backward, optimizer), ``compute`` the time from ``on_step_begin`` to ``on_step_end`` (without
the data loading). The first ``--warmup`` steps are excluded; each arm runs ``--repeats`` times and the median of the
per-run means is reported. Memory: torch has no CPU allocator statistics, so every run is a fresh subprocess and
reports its peak RSS (``resource.getrusage``) and the growth of that peak over the moment before any model is built
(models, teacher, optimizer state, activations); the median over the repeats is reported.

Usage: python benchmarks/bench_train_step.py [--image_size 112] [--batch_size 16] [--max_steps 13] [--warmup 3]
       [--repeats 2] [--num_coordinates 128] [--teacher_sizes vit-ti vit-s vit-b]
(``--teacher_sizes vit-s`` runs the main comparison only.) Writes benchmarks/results/bench_train_step.json (the cost
scaling table and plot of benchmarks/report.py). Expected duration of the default run on 2 CPU cores: about 8 minutes.
"""

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from online_kd import OnlineFeatureKDTrainer
from torch import nn
from transformers import (
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

from hf_tcs import CoordinateSystem, TCSConfig, TCSDistillationTrainer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

NUM_LABELS = 10
STUDENT = {"hidden_size": 192, "num_attention_heads": 3}
# name -> (hidden size, attention heads); all 12 layers, MLP 4 x hidden, patch 16.
TEACHERS = {"vit-ti": (192, 3), "vit-s": (384, 6), "vit-b": (768, 12)}
MAIN_TEACHER = "vit-s"
FEATURE_DIM = TEACHERS[MAIN_TEACHER][0]  # width of the random teacher features TCS's coordinates come from
KD_WEIGHT = 1.0


def vit_config(
    hidden_size: int, num_attention_heads: int, image_size: int, num_hidden_layers: int = 12, **extra
) -> ViTConfig:
    """A /16 ViT (12 layers unless told) of the given width at ``image_size`` px, without dropout."""
    return ViTConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=4 * hidden_size,
        image_size=image_size,
        patch_size=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **extra,
    )


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux, VmHWM of /proc/self/status: the high-water mark of this process's own address space. `ru_maxrss` is not
    that: a child started with fork + exec inherits its parent's peak as a floor, so a job started by a parent that ran
    the teacher pass would report the parent's memory. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


class StepTimer(TrainerCallback):
    """Timestamps of every optimizer step's begin and end."""

    def __init__(self):
        self.begins: list[float] = []
        self.ends: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.begins.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def summary_ms(self, warmup: int) -> dict[str, float]:
        """Step and compute times in ms over the steps after the first ``warmup``: the mean, and the step median
        (robust to the stalls another busy process causes)."""
        ends = np.asarray(self.ends)
        step = 1000 * np.diff(ends)[warmup - 1 :]
        compute = 1000 * (ends - np.asarray(self.begins))[warmup:]
        return {
            "step_ms": round(float(step.mean()), 1),
            "step_median_ms": round(float(np.median(step)), 1),
            "compute_ms": round(float(compute.mean()), 1),
        }


def make_dataset(
    num_examples: int, image_size: int, num_coordinates: int | None
) -> tuple[datasets.Dataset, CoordinateSystem | None]:
    """Random images and labels, the same in every arm; with ``num_coordinates``, also a ``tcs_coordinates`` column
    from a `CoordinateSystem` fitted on random features with a decaying spectrum (returned with the dataset).
    """
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((num_examples, 3, image_size, image_size), dtype=np.float32)
    features = datasets.Features(
        {"pixel_values": datasets.Array3D((3, image_size, image_size), "float32"), "label": datasets.Value("int64")}
    )
    labels = rng.integers(0, NUM_LABELS, num_examples)
    dataset = datasets.Dataset.from_dict({"pixel_values": pixels, "label": labels}, features=features)
    if num_coordinates is None:
        return dataset.with_format("torch"), None
    spectrum = 1.0 / np.sqrt(np.arange(1, FEATURE_DIM + 1))
    fit_features = rng.standard_normal((4 * FEATURE_DIM, FEATURE_DIM)) * spectrum
    coordinate_system = CoordinateSystem.fit(fit_features, num_components=num_coordinates)
    teacher_features = (rng.standard_normal((num_examples, FEATURE_DIM)) * spectrum).astype(np.float32)
    dataset = dataset.add_column("teacher_features", list(teacher_features))
    dataset = coordinate_system.add_coordinates(dataset, keep_features=False)
    return dataset.with_format("torch"), coordinate_system


def parameters_m(model: nn.Module) -> float:
    """Parameter count, in millions."""
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 2)


def arm_trainer(
    arm: str,
    student: nn.Module,
    dataset: datasets.Dataset,
    coordinate_system: CoordinateSystem | None,
    teacher: nn.Module | None,
    training_args: dict,
    callbacks: list[TrainerCallback],
) -> Trainer:
    """The trainer of one arm: ``ce`` (TCS trainer, weight 0), ``tcs`` (defaults, on the dataset's coordinates) or,
    with ``teacher``, online feature KD; ``training_args`` are the `TrainingArguments` of every arm."""
    if teacher is not None:
        return OnlineFeatureKDTrainer(
            model=student,
            teacher=teacher,
            kd_weight=KD_WEIGHT,
            args=TrainingArguments(**training_args),
            train_dataset=dataset,
            callbacks=callbacks,
        )
    weight = {} if arm == "tcs" else {"tcs_loss_weight": 0.0}
    return TCSDistillationTrainer(
        model=student,
        args=TCSConfig(**training_args, **weight),
        train_dataset=dataset,
        coordinate_system=coordinate_system,
        callbacks=callbacks,
    )


def run_arm(arm: str, args: argparse.Namespace) -> dict:
    """Train one arm for ``args.max_steps`` steps in this process; return its timings and memory."""
    torch.set_num_threads(args.threads)
    num_coordinates = args.num_coordinates if arm == "tcs" else None
    dataset, coordinate_system = make_dataset(args.batch_size * args.max_steps, args.image_size, num_coordinates)
    rss_before = peak_rss_mb()

    torch.manual_seed(0)
    student = ViTForImageClassification(vit_config(**STUDENT, image_size=args.image_size, num_labels=NUM_LABELS))
    timer = StepTimer()
    teacher_params = None
    with tempfile.TemporaryDirectory() as output_dir:
        common = dict(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.max_steps,
            learning_rate=1e-4,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
            data_seed=0,
        )
        teacher = None
        if arm not in ("ce", "tcs"):
            hidden_size, heads = TEACHERS[arm.removeprefix("kd-")]
            teacher = ViTModel(vit_config(hidden_size, heads, args.image_size), add_pooling_layer=False)
            teacher_params = parameters_m(teacher)
        arm_trainer(arm, student, dataset, coordinate_system, teacher, common, [timer]).train()
    return {
        "arm": arm,
        **timer.summary_ms(args.warmup),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_delta_mb": round(peak_rss_mb() - rss_before, 1),
        "timed_steps": len(timer.ends) - args.warmup,
        "student_params_m": parameters_m(student),
        "teacher_params_m": teacher_params,
    }


def run_in_subprocess(arm: str, args: argparse.Namespace) -> dict:
    """Run one arm in a fresh interpreter, so that its peak memory is its own."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--arm", arm, "--output", str(output)]
        for name in ("image_size", "batch_size", "max_steps", "warmup", "num_coordinates", "threads"):
            command += [f"--{name}", str(getattr(args, name))]
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return json.loads(output.read_text())


def summarise(runs: list[dict]) -> dict:
    """Median over the repeats of every measured number, plus the individual runs."""
    keys = ("step_ms", "step_median_ms", "compute_ms", "peak_rss_mb", "peak_rss_delta_mb")
    return {**{key: round(statistics.median(run[key] for run in runs), 1) for key in keys}, "runs": runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_steps", type=int, default=13, help="Optimizer steps per run, warm-up included.")
    parser.add_argument("--warmup", type=int, default=3, help="First steps left out of the timings.")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num_coordinates", type=int, default=128, help="k, the width of tcs_coordinates.")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--teacher_sizes",
        nargs="*",
        choices=list(TEACHERS),
        default=list(TEACHERS),
        help=f"Teachers of the online-KD arm ({MAIN_TEACHER} always runs: it is the main comparison).",
    )
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm in this process
    parser.add_argument("--output", help=argparse.SUPPRESS)  # internal: where --arm writes its result
    args = parser.parse_args()
    if args.warmup < 1 or args.max_steps < args.warmup + 2:
        parser.error("need --warmup >= 1 and --max_steps >= warmup + 2 (at least two timed steps).")

    if args.arm:
        Path(args.output).write_text(json.dumps(run_arm(args.arm, args)))
        return

    teachers = [name for name in TEACHERS if name in args.teacher_sizes or name == MAIN_TEACHER]
    arms = ["ce", "tcs", *(f"kd-{name}" for name in teachers)]
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for repeat in range(args.repeats):  # interleaved, so that a slow phase of the machine hits every arm alike
        for arm in arms:
            runs[arm].append(run_in_subprocess(arm, args))
            print(f"repeat {repeat + 1}/{args.repeats} {arm}: {runs[arm][-1]}", file=sys.stderr)
    results = {arm: summarise(arm_runs) for arm, arm_runs in runs.items()}

    ce, tcs, kd = results["ce"], results["tcs"], results[f"kd-{MAIN_TEACHER}"]
    timings = ("step_ms", "step_median_ms", "compute_ms")
    ratios = {f"tcs_over_ce_{key}": round(tcs[key] / ce[key], 3) for key in timings}
    ratios |= {f"tcs_over_kd_{MAIN_TEACHER}_{key}": round(tcs[key] / kd[key], 3) for key in timings}
    labels = {"ce": "cross-entropy", "tcs": f"TCS (k={args.num_coordinates}, no teacher)"}
    labels |= {f"kd-{name}": f"online feature KD, {name} teacher" for name in teachers}

    print(
        f"\nStudent ViT-Ti/16 ({ce['runs'][0]['student_params_m']} M params, random init), {args.image_size} px, "
        f"batch {args.batch_size}, {args.max_steps - args.warmup} timed steps after {args.warmup} warm-up, "
        f"median of {args.repeats} runs, {args.threads} threads.\n"
    )
    print(
        "| arm | step mean (ms) | step median (ms) | compute mean (ms) | step vs CE | peak RSS (MiB) "
        "| peak RSS growth (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for arm, result in results.items():
        print(
            f"| {labels[arm]} | {result['step_ms']} | {result['step_median_ms']} | {result['compute_ms']} | "
            f"{result['step_ms'] / ce['step_ms']:.2f}x | {result['peak_rss_mb']} | {result['peak_rss_delta_mb']} |"
        )
    print(
        f"\nTCS / CE step time: {ratios['tcs_over_ce_step_ms']} (mean), {ratios['tcs_over_ce_step_median_ms']} "
        "(median); goal <= 1.05"
    )
    print(
        f"TCS / online KD ({MAIN_TEACHER}) step time: {ratios[f'tcs_over_kd_{MAIN_TEACHER}_step_ms']} (mean), "
        f"{ratios[f'tcs_over_kd_{MAIN_TEACHER}_step_median_ms']} (median); goal <= 0.5"
    )
    if len(teachers) > 1:
        print(
            "\n| teacher | params (M) | KD step mean (ms) | KD step median (ms) | TCS / KD (mean) | TCS / KD (median) "
            "| KD peak RSS growth (MiB) |"
        )
        print("|---|---|---|---|---|---|---|")
        for name in teachers:
            result = results[f"kd-{name}"]
            print(
                f"| {name} | {result['runs'][0]['teacher_params_m']} | {result['step_ms']} | "
                f"{result['step_median_ms']} | {tcs['step_ms'] / result['step_ms']:.2f} | "
                f"{tcs['step_median_ms'] / result['step_median_ms']:.2f} | {result['peak_rss_delta_mb']} |"
            )
        print(
            f"(TCS: {tcs['step_ms']} ms mean, {tcs['peak_rss_delta_mb']} MiB peak RSS growth, whatever the teacher.)"
        )

    environment = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    settings = {
        key: getattr(args, key)
        for key in ("image_size", "batch_size", "max_steps", "warmup", "repeats", "num_coordinates")
    }
    settings |= {"student": "ViT-Ti/16 shape, random init", "num_labels": NUM_LABELS, "kd_weight": KD_WEIGHT}
    settings["teacher_sizes"] = teachers
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_train_step.json").write_text(
        json.dumps(
            {
                "benchmark": "train_step",
                "command": shlex.join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
                "environment": environment,
                "settings": settings,
                "results": results,
                "ratios": ratios,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
