"""The GPU cost claims in one command: the teacher pass, the training step, and the teacher freed before training.

Every model has random weights: costs do not depend on them (the bf16-vs-fp32 feature agreement does; see 1.).
1. Teacher pass: a ViT-B/16-shaped (12 layers, hidden 768, 86 M parameters) and a ViT-L/16-shaped (24 layers, hidden
   1024, 303 M) teacher, saved with a ViT image processor and loaded with `load_teacher`, over ``num_images`` CIFAR-10
   images (bench_teacher_pass.py's set, repeated) at 224 px, in float32 and in bfloat16 (``teacher_dtype``):
   `precompute_teacher_features` against a hand-written loop of `Teacher.encode` over the same batches
   (`bench_teacher_pass.measure`: images/s, overhead, cached second call; goal: overhead <= 10 %); the model's raw
   forward alone on already preprocessed tensors (what the accelerator does without the CPU preprocessing both of the
   above pay); the pass's peak memory; and the cosine, row by row, between the bfloat16 and the float32 features of
   the same images (>= 0.999 is the goal for real weights; random weights are reported as seen).
2. Training step: bench_train_step.py's student (ViT-Ti/16, the DeiT-Tiny shape, 5.5 M parameters, random init) at
   224 px, batch 128, bf16 autocast (``TrainingArguments(bf16=True)``, as a user runs it), AdamW, under cross-entropy,
   TCS (k = 128 coordinates, no teacher) and online feature KD (`online_kd.OnlineFeatureKDTrainer`) with the ViT-B and
   the ViT-L teacher in the loop; the KD teacher is cast to bfloat16 (the student's autocast does not reach it: a
   float32 teacher would only make KD slower). Each arm runs in its own process: median step time over
   ``timed_steps`` steps after ``warmup`` (timestamps after a CUDA synchronisation; "step" is the time between step
   ends, data loading by worker processes included, "compute" the time from step begin to step end) and the peak
   memory of the process (`torch.cuda.max_memory_allocated`). Goals: TCS / CE <= 1.05 in time and in memory;
   TCS / KD <= 0.5 in time and <= 0.77 in memory with the ViT-B teacher, lower still with the ViT-L one.
3. Teacher freed: the same student trained by a trainer that runs its own teacher pass (``teacher_model_name_or_path``:
   the ViT-L folder, float32) and by one handed precomputed coordinates of that teacher (fitted in the parent
   process), each in its own process: the peak memory during training (reset once the trainer is built) must be the
   same (goal: within 1 %), i.e. the teacher is gone from the GPU before the student trains.

Without a GPU the memory figures are a CPU substitute, the process's resident-set high-water mark (``VmHWM``, reset by
writing 5 to /proc/self/clear_refs), or null where it cannot be reset (not Linux); every figure names its source.

Writes benchmarks/results/bench_gpu.json (device, versions, settings, every figure, each goal and whether it is met)
and bench_gpu.md (the tables), after every section. ``--smoke``: tiny shapes and a few steps, on any device, in
seconds (tests/test_benchmarks.py runs it); its files go to benchmarks/results/tmp/ unless ``--output`` is given.

Usage: python benchmarks/bench_gpu.py [--smoke] [--output FILE.json] [--in_process]   (or `make bench-gpu`)
Expected duration on one H200: about 4 minutes (an estimate: it has not run on a GPU yet; the goal is under 6). On
the device machine, where `datasets` and `evaluate` come as carried wheels: `bash benchmarks/gpu_device_run.sh` (its
header gives the exact call).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import accelerate
import bench_banking77 as harness  # the harness: environment, command line, one job per process
import datasets
import numpy as np
import torch
from bench_teacher_pass import image_dataset, measure
from bench_train_step import (
    NUM_LABELS,
    STUDENT,
    StepTimer,
    arm_trainer,
    make_dataset,
    parameters_m,
    peak_rss_mb,
    vit_config,
)
from transformers import ViTForImageClassification, ViTImageProcessor, ViTModel

import hf_tcs
from hf_tcs import CoordinateSystem, TCSConfig, TCSDistillationTrainer, load_teacher, precompute_teacher_features

DTYPES = ("float32", "bfloat16")
TEACHER_LABELS = {"vit-b": "ViT-B/16", "vit-l": "ViT-L/16"}
VIT_B = {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12}
VIT_L = {"hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24}
FULL = {
    "image_size": 224,
    "num_images": 512,  # teacher pass, and the training set of the teacher-freed check (preprocessing: CPU-bound)
    "teacher_batch_size": 128,
    "batch_size": 128,
    "train_examples": 1024,  # random images of the training-step arms; the epochs repeat them
    "warmup": 5,
    "timed_steps": 30,
    "freed_steps": 10,
    "num_coordinates": 128,
    "dataloader_num_workers": 8,
    "student": {**STUDENT, "num_hidden_layers": 12},
    "teachers": {"vit-b": VIT_B, "vit-l": VIT_L},
}
SMOKE = {
    "image_size": 32,
    "num_images": 12,
    "teacher_batch_size": 4,
    "batch_size": 4,
    "train_examples": 8,
    "warmup": 1,
    "timed_steps": 2,
    "freed_steps": 2,
    "num_coordinates": 8,
    "dataloader_num_workers": 0,
    "student": {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1},
    "teachers": {
        "vit-b": {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1},
        "vit-l": {"hidden_size": 48, "num_attention_heads": 2, "num_hidden_layers": 2},
    },
}
ARMS = ["ce", "tcs", "kd-vit-b", "kd-vit-l"]
FREED_TEACHER = "vit-l"
FREED_TOLERANCE = 0.01
CLEAR_REFS = Path("/proc/self/clear_refs")  # Linux: writing 5 resets VmHWM to the current resident set


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    """Wait for the queued CUDA work: without it a timestamp times the kernel launches, not the work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class PeakMemory:
    """This process's peak memory since `reset`, in MiB: the CUDA allocator's `max_memory_allocated` on a GPU; on a
    CPU the resident-set high-water mark (`VmHWM`, reset through /proc/self/clear_refs), or None where that cannot
    be reset."""

    def __init__(self, on: torch.device):
        self.cuda = on.type == "cuda"
        self.source = "torch.cuda.max_memory_allocated" if self.cuda else "VmHWM (CPU substitute)"
        self.available = True

    def reset(self) -> None:
        if self.cuda:
            synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            CLEAR_REFS.write_text("5")
        except OSError:
            self.available = False

    def peak_mb(self) -> float | None:
        if self.cuda:
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return round(peak_rss_mb(), 1) if self.available else None

    def current_mb(self) -> float | None:
        """Memory held now: allocated tensors on a GPU, the resident set (`VmRSS`) on a CPU."""
        if self.cuda:
            return round(torch.cuda.memory_allocated() / 2**20, 1)
        status = Path("/proc/self/status")
        lines = status.read_text().splitlines() if status.is_file() else []
        rss = [int(line.split()[1]) / 2**10 for line in lines if line.startswith("VmRSS:")]
        return round(rss[0], 1) if rss else None


class SyncedStepTimer(StepTimer):
    """`StepTimer` with a CUDA synchronisation before each timestamp, and the median compute time too."""

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize()
        super().on_step_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        super().on_step_end(args, state, control, **kwargs)

    def summary_ms(self, warmup: int) -> dict[str, float]:
        compute = 1000 * (np.asarray(self.ends) - np.asarray(self.begins))[warmup:]
        return {**super().summary_ms(warmup), "compute_median_ms": round(float(np.median(compute)), 1)}


def training_arguments(output_dir: str, settings: dict, max_steps: int) -> dict:
    """The `TrainingArguments` of every arm: bf16 autocast, AdamW, worker processes for the data on a GPU."""
    workers = settings["dataloader_num_workers"]
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=settings["batch_size"],
        max_steps=max_steps,
        learning_rate=1e-4,
        bf16=True,
        use_cpu=device().type == "cpu",
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        seed=0,
        data_seed=0,
    )


def student(settings: dict) -> ViTForImageClassification:
    torch.manual_seed(0)
    return ViTForImageClassification(
        vit_config(**settings["student"], image_size=settings["image_size"], num_labels=NUM_LABELS)
    )


# ---- 1. Teacher pass ------------------------------------------------------------------------------------------------


def save_random_teacher(folder: Path, shape: dict, image_size: int) -> Path:
    """A random-init ViT encoder of ``shape`` (no pooler) and a ViT image processor at ``image_size`` in ``folder``."""
    torch.manual_seed(0)
    ViTModel(vit_config(**shape, image_size=image_size), add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def image_set(num_images: int) -> datasets.Dataset:
    """``num_images`` CIFAR-10 images (bench_teacher_pass's, repeated as needed), held in memory so that every
    teacher pass starts from an empty cache (a file-backed dataset would keep its features between runs)."""
    source = image_dataset(num_images)
    repeated = datasets.concatenate_datasets([source] * math.ceil(num_images / len(source))).select(range(num_images))
    return datasets.Dataset.from_dict(repeated.to_dict(), features=repeated.features)


@torch.inference_mode()
def forward_images_per_s(teacher: hf_tcs.Teacher, images: list, batch_size: int) -> float:
    """Images/s of the teacher's raw model forward on one preprocessed batch, repeated over as many images."""
    pixels = teacher.preprocess(images[:batch_size])["pixel_values"].to(teacher.device, teacher.dtype)
    teacher.model(pixel_values=pixels)  # warm-up
    repeats = max(1, len(images) // batch_size)
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        teacher.model(pixel_values=pixels)
    synchronize()
    return round(repeats * len(pixels) / (time.perf_counter() - start), 1)


def teacher_pass(name: str, folder: Path, images: datasets.Dataset, settings: dict) -> tuple[list[dict], dict]:
    """One teacher in float32 and bfloat16: the pass's rows, and how far the bfloat16 features are from float32's."""
    rows, features = [], {}
    sample = images["image"][: 2 * settings["teacher_batch_size"]]
    for dtype in DTYPES:
        teacher = load_teacher(folder, dtype=dtype)
        memory = PeakMemory(teacher.device)
        memory.reset()
        label = f"{TEACHER_LABELS[name]} (random init)"
        row = measure(label, teacher, images, "image", settings["teacher_batch_size"])
        row |= {"teacher_size": name, "dtype": dtype, "peak_memory_mb": memory.peak_mb()}
        row |= {"memory_source": memory.source, "params_m": parameters_m(teacher.model)}
        row["forward_only_images_per_s"] = forward_images_per_s(teacher, sample, settings["teacher_batch_size"])
        features[dtype] = teacher.encode(sample)
        rows.append(row)
        print(f"teacher pass {name} {dtype}: {row}", file=sys.stderr, flush=True)
        del teacher
        torch.cuda.empty_cache()
    reference, half = (torch.from_numpy(features[dtype]) for dtype in DTYPES)
    cosine = torch.nn.functional.cosine_similarity(half, reference, dim=1).numpy()
    agreement = {
        "rows": len(cosine),
        "cosine_min": round(float(cosine.min()), 6),
        "cosine_median": round(float(np.median(cosine)), 6),
        "cosine_mean": round(float(cosine.mean()), 6),
        "weights": "random init",
    }
    return rows, agreement


# ---- 2. Training step -----------------------------------------------------------------------------------------------


def train_arm(job: dict) -> dict:
    """One arm of the training-step comparison, in this process: step times and the process's peak memory."""
    settings, arm = job["settings"], job["arm"]
    memory = PeakMemory(device())
    memory.reset()
    num_coordinates = settings["num_coordinates"] if arm == "tcs" else None
    dataset, coordinate_system = make_dataset(settings["train_examples"], settings["image_size"], num_coordinates)
    model = student(settings)
    teacher = None
    if arm.startswith("kd-"):
        shape = settings["teachers"][arm.removeprefix("kd-")]
        teacher = ViTModel(vit_config(**shape, image_size=settings["image_size"]), add_pooling_layer=False)
        teacher.to(torch.bfloat16)
    timer = SyncedStepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = training_arguments(output_dir, settings, settings["warmup"] + settings["timed_steps"])
        arm_trainer(arm, model, dataset, coordinate_system, teacher, training_args, [timer]).train()
    return {
        "arm": arm,
        **timer.summary_ms(settings["warmup"]),
        "timed_steps": len(timer.ends) - settings["warmup"],
        "peak_memory_mb": memory.peak_mb(),
        "memory_source": memory.source,
        "student_params_m": parameters_m(model),
        "teacher_params_m": parameters_m(teacher) if teacher is not None else None,
    }


# ---- 3. Teacher freed -----------------------------------------------------------------------------------------------


def freed_check_data(workspace: Path, teacher_folder: Path, images: datasets.Dataset, settings: dict) -> dict:
    """The training set of the teacher-freed check (images for the teacher, the student's pixels, precomputed
    coordinates of the teacher) and its coordinate system, saved under ``workspace``; returns their paths."""
    size = settings["image_size"]
    processor = ViTImageProcessor(size={"height": size, "width": size})
    pixels = images.map(
        lambda batch: {"pixel_values": processor(images=batch["image"], return_tensors="np")["pixel_values"]},
        batched=True,
        desc="Student pixels",
    )
    teacher = load_teacher(teacher_folder)
    features = precompute_teacher_features(
        pixels, teacher, input_column="image", batch_size=settings["teacher_batch_size"], cache_dir=workspace / "cache"
    )
    del teacher
    torch.cuda.empty_cache()
    coordinate_system = CoordinateSystem.fit(features, num_components=settings["num_coordinates"])
    coordinate_system.add_coordinates(features, keep_features=False).save_to_disk(workspace / "data")
    coordinate_system.save_pretrained(workspace / "coordinates")
    return {"data": str(workspace / "data"), "coordinates": str(workspace / "coordinates")}


def freed_arm(job: dict) -> dict:
    """Train the student on the check's set, with the trainer's own teacher pass (``teacher_pass``) or on the
    precomputed coordinates (``precomputed``); the peak memory of the training alone, from a reset after the trainer
    is built."""
    settings, arm = job["settings"], job["arm"]
    memory = PeakMemory(device())
    memory.reset()
    # The student's columns as tensors; the images stay as they are for the teacher pass.
    dataset = datasets.load_from_disk(job["data"])
    dataset = dataset.with_format("torch", columns=["pixel_values", "label"], output_all_columns=True)
    options, coordinate_system = {"tcs_num_components": settings["num_coordinates"]}, None
    if arm == "teacher_pass":
        dataset = dataset.remove_columns(["tcs_coordinates"])
        options |= dict(teacher_model_name_or_path=job["teacher"], teacher_batch_size=settings["teacher_batch_size"])
    else:
        coordinate_system = CoordinateSystem.from_pretrained(job["coordinates"])
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = training_arguments(output_dir, settings, settings["freed_steps"])
        trainer = TCSDistillationTrainer(
            model=student(settings),
            args=TCSConfig(**training_args, **options),
            train_dataset=dataset,
            coordinate_system=coordinate_system,
        )
        before = {"peak_before_training_mb": memory.peak_mb(), "allocated_before_training_mb": memory.current_mb()}
        memory.reset()
        trainer.train()
    seconds = trainer.targets.teacher_pass_seconds
    return {
        "arm": arm,
        "teacher_pass_s": None if seconds is None else round(seconds, 2),
        **before,
        "training_peak_mb": memory.peak_mb(),
        "memory_source": memory.source,
    }


def run_job(job: dict) -> dict:
    return freed_arm(job) if job["kind"] == "freed" else train_arm(job)


# ---- Report ---------------------------------------------------------------------------------------------------------


def gpu_environment() -> dict:
    """The harness's environment (versions, CPU, load) plus the accelerator's."""
    environment = harness.environment() | {"accelerate": accelerate.__version__, "hf_tcs": hf_tcs.__version__}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        environment |= {
            "device": properties.name,
            "device_memory_gib": round(properties.total_memory / 2**30, 1),
            "compute_capability": f"{properties.major}.{properties.minor}",
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    else:
        environment["device"] = "cpu"
    return environment


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else round(numerator / denominator, 3)


def goals(report: dict) -> list[dict]:
    """Every goal of the benchmark with its measured value and whether it is met (None: not measured)."""
    rows = []

    def goal(name: str, value: float | None, target: str, met) -> None:
        rows.append({"goal": name, "value": value, "target": target, "met": None if value is None else bool(met)})

    for row in report.get("teacher_pass", []):
        name = f"teacher pass overhead over the encode loop, {TEACHER_LABELS[row['teacher_size']]} {row['dtype']} (%)"
        goal(name, row["overhead_pct"], "<= 10", row["overhead_pct"] <= 10)
    for size, agreement in report.get("feature_agreement", {}).items():
        value = agreement["cosine_min"]
        target = ">= 0.999 (the check for real weights; these are random)"
        goal(f"bf16 vs fp32 features, {TEACHER_LABELS[size]}: lowest cosine of a row", value, target, value >= 0.999)
    arms = report.get("train_step", {})
    if {"ce", "tcs"} <= set(arms):
        for key, what in (("step_median_ms", "median step time"), ("peak_memory_mb", "peak memory")):
            value = ratio(arms["tcs"][key], arms["ce"][key])
            goal(f"TCS / cross-entropy, {what}", value, "<= 1.05", value is not None and value <= 1.05)
            by_teacher = {}
            for size in ("vit-b", "vit-l"):
                if f"kd-{size}" in arms:
                    by_teacher[size] = ratio(arms["tcs"][key], arms[f"kd-{size}"][key])
            if "vit-b" in by_teacher:
                target = 0.5 if key == "step_median_ms" else 0.77
                value = by_teacher["vit-b"]
                goal(f"TCS / online KD (ViT-B), {what}", value, f"<= {target}", value is not None and value <= target)
            if len(by_teacher) == 2:
                value = by_teacher["vit-l"]
                met = None in by_teacher.values() or value < by_teacher["vit-b"]
                goal(f"TCS / online KD (ViT-L), {what}", value, f"< ViT-B's ({by_teacher['vit-b']})", met)
    freed = report.get("teacher_freed", {})
    if {"teacher_pass", "precomputed"} <= set(freed):
        value = ratio(freed["teacher_pass"]["training_peak_mb"], freed["precomputed"]["training_peak_mb"])
        target = f"1 ± {FREED_TOLERANCE}"
        met = value is not None and abs(value - 1) <= FREED_TOLERANCE
        goal("teacher freed: training peak memory, own teacher pass / precomputed", value, target, met)
    return rows


def cell(value) -> str:
    return "–" if value is None else f"{value:,}" if isinstance(value, (int, float)) else str(value)


def markdown(report: dict) -> str:
    """The summary tables of ``report``."""
    env, settings = report["environment"], report["settings"]
    memory = "torch.cuda.max_memory_allocated" if env["device"] != "cpu" else "VmHWM, CPU substitute"
    lines = [
        f"# GPU cost benchmark{' (SMOKE: tiny shapes, numbers mean nothing)' if report['smoke'] else ''}",
        "",
        f"Device: {env['device']}; torch {env['torch']}, transformers {env['transformers']}, datasets "
        f"{env['datasets']}, accelerate {env['accelerate']}, hf_tcs {env['hf_tcs']}. Command: `{report['command']}`. "
        f"All weights random (costs only). Memory: {memory}, MiB.",
        "",
    ]
    if report.get("teacher_pass"):
        lines += [
            f"## Teacher pass ({settings['num_images']} images, {settings['image_size']} px, batch "
            f"{settings['teacher_batch_size']})",
            "",
            "| teacher | dtype | encode loop (img/s) | precompute (img/s) | overhead | cached call (s) "
            "| forward only (img/s) | peak memory |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["teacher_pass"]:
            lines.append(
                f"| {r['teacher']} | {r['dtype']} | {cell(r['loop_examples_per_s'])} | "
                f"{cell(r['precompute_examples_per_s'])} | {r['overhead_pct']} % | {r['cached_s']} | "
                f"{cell(r['forward_only_images_per_s'])} | {cell(r['peak_memory_mb'])} |"
            )
        lines += ["", "bf16 vs fp32 features, cosine per row (random weights):", ""]
        for size, a in report.get("feature_agreement", {}).items():
            lines.append(
                f"- {TEACHER_LABELS[size]}: min {a['cosine_min']}, median {a['cosine_median']} over {a['rows']} rows"
            )
        lines.append("")
    if report.get("train_step"):
        lines += [
            f"## Training step (student ViT-Ti/16 shape, {settings['image_size']} px, batch {settings['batch_size']}, "
            f"bf16 autocast, median over {settings['timed_steps']} steps after {settings['warmup']})",
            "",
            "| arm | step median (ms) | compute median (ms) | peak memory | step vs TCS | memory vs TCS |",
            "|---|---|---|---|---|---|",
        ]
        tcs = report["train_step"].get("tcs", {})
        for arm, r in report["train_step"].items():
            lines.append(
                f"| {arm} | {cell(r['step_median_ms'])} | {cell(r['compute_median_ms'])} | "
                f"{cell(r['peak_memory_mb'])} "
                f"| {cell(ratio(r['step_median_ms'], tcs.get('step_median_ms')))} "
                f"| {cell(ratio(r['peak_memory_mb'], tcs.get('peak_memory_mb')))} |"
            )
        lines.append("")
    if report.get("teacher_freed"):
        lines += [
            f"## Teacher freed ({TEACHER_LABELS[FREED_TEACHER]} teacher)",
            "",
            "| run | teacher pass (s) | peak before training | allocated before training | training peak |",
            "|---|---|---|---|---|",
        ]
        for arm, r in report["teacher_freed"].items():
            lines.append(
                f"| {arm} | {cell(r['teacher_pass_s'])} | {cell(r['peak_before_training_mb'])} | "
                f"{cell(r['allocated_before_training_mb'])} | {cell(r['training_peak_mb'])} |"
            )
        lines.append("")
    lines += ["## Goals", "", "| goal | value | target | met |", "|---|---|---|---|"]
    met = {True: "yes", False: "**no**", None: "not measured"}
    lines += [f"| {g['goal']} | {cell(g['value'])} | {g['target']} | {met[g['met']]} |" for g in report["goals"]]
    return "\n".join(lines) + "\n"


def write(report: dict, output: Path) -> None:
    """The JSON and its markdown summary (same name, .md), with the goals as measured so far."""
    report["goals"] = goals(report)
    harness.write_report(report, output)
    output.with_suffix(".md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="Tiny shapes and a few steps (seconds, any device).")
    parser.add_argument("--output", default=None, help="The JSON file; the markdown summary goes next to it.")
    parser.add_argument("--in_process", action="store_true", help="No process per arm (tests): memory not isolated.")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job file in this process
    args = parser.parse_args(argv)
    if args.job:
        return harness.run_job_file(args.job, run_job)
    settings = SMOKE if args.smoke else FULL
    default = harness.RESULTS / ("tmp/bench_gpu_smoke.json" if args.smoke else "bench_gpu.json")
    output = Path(args.output or default)
    report = {
        "benchmark": "gpu",
        "command": harness.command_line(__file__, argv),
        "smoke": args.smoke,
        "weights": "random init (costs only)",
        "environment": gpu_environment(),
        "settings": settings,
    }

    def run(job: dict) -> dict:
        result = run_job(job) if args.in_process else harness.run_isolated(Path(__file__), job)
        print(f"{job['kind']} {job['arm']}: {result}", file=sys.stderr, flush=True)
        return result | {"isolated": not args.in_process}

    with tempfile.TemporaryDirectory() as workspace:
        workspace = Path(workspace)
        size = settings["image_size"]
        teachers = settings["teachers"].items()
        folders = {name: save_random_teacher(workspace / name, shape, size) for name, shape in teachers}
        images = image_set(settings["num_images"])
        report["teacher_pass"], report["feature_agreement"] = [], {}
        for name, folder in folders.items():
            rows, report["feature_agreement"][name] = teacher_pass(name, folder, images, settings)
            report["teacher_pass"] += rows
        write(report, output)

        report["train_step"] = {}
        for arm in ARMS:
            report["train_step"][arm] = run({"kind": "train", "arm": arm, "settings": settings})
            write(report, output)

        paths = freed_check_data(workspace / "freed", folders[FREED_TEACHER], images, settings)
        job = {"kind": "freed", "settings": settings, "teacher": str(folders[FREED_TEACHER]), **paths}
        report["teacher_freed"] = {arm: run(job | {"arm": arm}) for arm in ("teacher_pass", "precomputed")}
    write(report, output)
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
