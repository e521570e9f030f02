"""The benchmark harness of `make bench` on tiny configurations, so that it cannot rot.

Every benchmark runs for real (data preparation, teacher pass, probe, training of each arm, merging, JSON, report) with
the tiny teachers of `conftest.py`, the Banking77 and CIFAR-10 samples of tests/data and 2-3 optimizer steps per run;
only the sizes differ from the documented commands. One run goes through the subprocess path (`run_isolated`) that
the real benchmarks use for every run.
"""

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).parent / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_banking77  # noqa: E402
import bench_cifar10  # noqa: E402
import bench_few_shot  # noqa: E402
import report  # noqa: E402

BANKING77_ARMS = ["ce", "tcs", "online_kd", "random_basis"]
CIFAR10_ARMS = ["ce", "tcs", "online_kd", "random_basis"]
TINY_VIT_STUDENT = {"student_hidden_size": 32, "student_layers": 1}


@pytest.fixture
def one_thread(monkeypatch):
    """Tiny models gain nothing from threads, and lose much when other jobs share the cores: one thread, here and in
    the benchmarks' subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def banking77_dir(tmp_path) -> Path:
    """The Banking77 sample (8 texts per intent, columns text,category) as the bench's data folder: 6 per intent for
    training, 2 for testing, and the intent names."""
    folder = tmp_path / "banking77"
    folder.mkdir()
    rows = list(csv.DictReader((DATA_DIR / "banking77_sample.csv").open()))
    seen: dict[str, int] = {}
    splits: dict[str, list] = {"train": [], "test": []}
    for row in rows:
        seen[row["category"]] = seen.get(row["category"], 0) + 1
        splits["train" if seen[row["category"]] <= 6 else "test"].append(row)
    for split, split_rows in splits.items():
        with (folder / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, ["text", "category"])
            writer.writeheader()
            writer.writerows(split_rows)
    shutil.copy(ROOT / "examples" / "data" / "banking77" / "categories.json", folder)
    return folder


def _check_arm_runs(data: dict, runs: list[tuple[str, int]]) -> None:
    """Every (arm, seed) of ``runs`` ran once, with accuracy, timing and memory figures."""
    assert sorted((run["arm"], run["seed"]) for run in data["runs"]) == sorted(runs)
    for run in data["runs"]:
        assert 0.0 <= run["test_accuracy"] <= 1.0
        assert run["train_runtime_s"] > 0 and run["seconds_per_step"] > 0 and run["steps"] >= 2
        assert run["peak_rss_mb"] > 0 and run["peak_rss_growth_mb"] >= 0
        assert len(run["load_average_before"]) == 3
    for arm in {arm for arm, _ in runs}:
        summary, seeds = data["summary"][arm], [seed for name, seed in runs if name == arm]
        assert summary["n"] == len(seeds) and summary["timed_runs"] == len(seeds)
        assert {"test_accuracy_mean", "test_accuracy_std", "train_runtime_s_mean", "seconds_per_step_mean"} <= set(
            summary
        )
    for key in ("torch", "transformers", "cpu_model", "threads", "load_average", "load_average_after"):
        assert key in data["environment"]
    assert data["teacher_pass"]["seconds"] > 0 and not data["teacher_pass"]["served_from_cache"]
    assert 0.0 <= data["teacher_probe_accuracy"] <= 1.0


def cli(*flags: str, **options) -> list[str]:
    """Command-line arguments: ``--flag`` for each flag, ``--name value...`` for each option (lists expanded)."""
    arguments = [f"--{flag}" for flag in flags]
    for name, value in options.items():
        arguments += [f"--{name}", *map(str, value if isinstance(value, list) else [value])]
    return arguments


def test_benchmarks_end_to_end(tmp_path, teacher_dirs, banking77_dir, one_thread):
    results = tmp_path / "results"
    text = dict(teacher=teacher_dirs["minilm"], data_dir=banking77_dir, max_test_samples=40)
    banking77 = cli(**text, max_train_samples=200, max_steps=3, output=results / "bench_banking77.json")
    bench_banking77.main(banking77 + cli("in_process", arms=BANKING77_ARMS, seeds=0))
    # --resume runs only what is missing (ce, seed 1), here in its own process as the real benchmark does.
    data = bench_banking77.main(banking77 + cli("resume", arms="ce", seeds=[0, 1]))
    _check_arm_runs(data, [(arm, 0) for arm in BANKING77_ARMS] + [("ce", 1)])
    isolated = [run for run in data["runs"] if run["isolated"]]
    assert [(run["arm"], run["seed"]) for run in isolated] == [("ce", 1)]
    assert data["summary"]["ce"]["peak_rss_mb"] == isolated[0]["peak_rss_mb"]  # memory from isolated runs only
    assert data["settings"]["seeds"] == [0, 1] and len(data["invocations"]) == 2
    assert "--resume" in data["command"] and data["command"].startswith("python benchmarks/bench_banking77.py")
    kd = next(run for run in data["runs"] if run["arm"] == "online_kd")
    assert kd["kd_weight"] == 4.0 and kd["feature_scale"] > 0 and kd["active_coordinates"] is None
    assert next(run for run in data["runs"] if run["arm"] == "tcs")["active_coordinates"] > 0

    # Both settings, the tiny sentence encoder as the pretrained student and (the mpnet folder missing) its teacher.
    few_shot_args = cli(
        "in_process",
        **text,
        shots=2,
        seeds=[0, 1],
        max_steps=2,
        pretrained_max_steps=2,
        curve_seed=1,
        student_dir=teacher_dirs["minilm"],
        teacher_dir=tmp_path / "no_mpnet",
        output=results / "bench_few_shot.json",
    )
    few_shot = bench_few_shot.main(few_shot_args + cli(arms="tcs_pool"))
    few_shot = bench_few_shot.main(few_shot_args + cli("resume"))  # runs only the missing ce / tcs_labelled
    assert set(few_shot["summary"]) == {"scratch/2", "pretrained/2"}
    assert all(set(group) == set(bench_few_shot.ARMS) for group in few_shot["summary"].values())
    assert len(few_shot["runs"]) == 2 * 2 * 4 and len(few_shot["invocations"]) == 2
    assert {run["teacher"] for run in few_shot["runs"]} == {str(teacher_dirs["minilm"])}
    for run in few_shot["runs"]:
        if run["arm"] != "teacher_probe":
            # 2 labelled texts per intent in every arm; the pool arm adds the other 462 - 154 texts as a pool.
            assert run["labelled_examples"] == 2 * 77 and run["steps"] == 2
            assert run["pool_examples"] == (462 - 2 * 77 if run["arm"] == "tcs_pool" else 0)
            assert ("curve" in run) == (run["seed"] == 1)
    assert [step for step, _ in next(run for run in few_shot["runs"] if "curve" in run)["curve"]][:2] == [1, 2]

    images = cli("in_process", data_dir=DATA_DIR / "cifar10_sample.parquet", max_steps=2, **TINY_VIT_STUDENT)
    cifar10 = bench_cifar10.main(
        images
        + cli(
            teacher_dir=teacher_dirs["dino"],
            max_train_samples=64,
            max_test_samples=30,
            arms=CIFAR10_ARMS,
            output=results / "bench_cifar10.json",
        )
    )
    _check_arm_runs(cifar10, [(arm, 0) for arm in CIFAR10_ARMS])
    assert cifar10["cost_only"] is False
    # Without a teacher folder: a random DINO-shaped teacher (the smallest shape here), labelled cost only.
    random_teacher = bench_cifar10.main(
        images
        + cli(
            random_teacher_size="vit-ti",
            random_teacher_image_size=32,
            max_train_samples=32,
            max_test_samples=16,
            arms="ce",
            output=results / "bench_cifar10_random_teacher.json",
        )
    )
    assert random_teacher["cost_only"] is True and random_teacher["settings"]["cost_only"] is True

    shutil.copy(ROOT / "benchmarks" / "results" / "bench_train_step.json", results)
    markdown = report.main(["--results", str(results)]).read_text()
    sections = {section.split("\n", 1)[0]: section for section in markdown.split("\n## ")[1:]}
    banking77_table, few_shot_table = sections["Banking77"], sections["Banking77 few-shot"]
    cifar10_table = sections[f"CIFAR-10, {teacher_dirs['dino']}"]
    random_teacher_table = next(section for title, section in sections.items() if "COST ONLY" in title)
    for table in (banking77_table, cifar10_table):
        assert "| teacher linear probe |" in table
        for arm in BANKING77_ARMS:
            assert f"| {bench_banking77.ARM_LABELS[arm]} | " in table
    assert "One-off teacher pass over the 200 training texts (cache bypassed)" in banking77_table
    assert all(few_shot_table.count(f"| {label} | ") == 2 for label in bench_few_shot.ARMS.values())  # 2 settings
    assert (results / "plots" / "few_shot_curves.png").is_file()
    rows = [line for line in random_teacher_table.splitlines() if line.startswith("| ") and "| arm |" not in line]
    assert len(rows) == 1 and rows[0].split(" | ")[1] == "(cost only)"  # no accuracy, no probe
    assert "| online feature KD, vit-b teacher |" in sections["Cost scaling: TCS vs online KD as the teacher grows"]
    plots = results / "plots"
    for name in ("banking77", "few_shot", "cifar10", "cifar10_random_teacher", "cost_scaling"):
        assert (plots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(plots/{name}.png)" in markdown


def test_resume_keeps_the_committed_banking77_results(tmp_path):
    """The committed results (written before this harness: no memory, no data settings) merge with a default run."""
    legacy = tmp_path / "bench_banking77.json"
    shutil.copy(ROOT / "benchmarks" / "results" / "bench_banking77.json", legacy)
    default = {"epochs": 4.0, "max_steps": None, "teacher": "all-MiniLM-L6-v2", "data": "banking77"}
    default |= {"train_examples": 10003, "test_examples": 3080}
    compared, legacy_settings = bench_banking77.COMPARED_SETTINGS, bench_banking77.LEGACY_SETTINGS
    command = "python benchmarks/bench_banking77.py --resume"
    merged = bench_banking77.open_report(legacy, "banking77", command, default, compared, True, **legacy_settings)
    original = json.loads((ROOT / "benchmarks" / "results" / "bench_banking77.json").read_text())["runs"]
    assert [(r["arm"], r["seed"]) for r in merged["runs"]] == [(r["arm"], r["seed"]) for r in original]
    summary = bench_banking77.summarise_runs(merged["runs"])
    for arm, arm_summary in summary.items():
        runs = [run for run in merged["runs"] if run["arm"] == arm]
        assert arm_summary["n"] == len(runs)
        if not any(run.get("memory") == "VmHWM" for run in runs):
            assert arm_summary["peak_rss_mb"] is None  # ru_maxrss figures (inherited from the parent) never count
    with pytest.raises(SystemExit, match="epochs"):
        changed = {**default, "epochs": 2.0}
        bench_banking77.open_report(legacy, "banking77", command, changed, compared, True, **legacy_settings)


def test_remeasure_replaces_only_runs_without_their_own_memory(tmp_path):
    """`--resume --remeasure` reruns the chosen runs an earlier harness measured without `VmHWM`, in their place;
    measured runs and runs of arms not chosen stay."""
    legacy = {"arm": "ce", "seed": 0, "test_accuracy": 0.5, "peak_rss_mb": 1707.0}  # ru_maxrss of the parent
    measured = {"arm": "tcs", "seed": 0, "test_accuracy": 0.6, "memory": "VmHWM"}
    other_arm = {"arm": "tcs_literal", "seed": 0, "test_accuracy": 0.55}
    jobs = [{"arm": "ce", "seed": 0}, {"arm": "tcs", "seed": 0}]
    calls = []

    def run_job(job: dict) -> dict:
        calls.append((job["arm"], job["seed"]))
        return {"test_accuracy": 0.7, "peak_rss_mb": 900.0, "memory": "VmHWM"}

    def rerun(remeasure: bool) -> list[dict]:
        report = {"runs": [legacy, measured, other_arm], "invocations": [{}], "environment": {}}
        output = tmp_path / "bench.json"
        bench_banking77.run_jobs(
            report, jobs, ("arm", "seed"), output, ROOT, run_job, len, in_process=True, remeasure=remeasure
        )
        assert json.loads(output.read_text())["runs"] == report["runs"]
        return report["runs"]

    assert rerun(remeasure=False) == [legacy, measured, other_arm] and calls == []
    runs = rerun(remeasure=True)
    assert calls == [("ce", 0)]
    assert runs[1:] == [measured, other_arm]  # the new run in the place of the one it replaces
    assert runs[0]["arm"] == "ce" and runs[0]["peak_rss_mb"] == 900.0 and runs[0]["memory"] == "VmHWM"


def test_few_shot_labelled_examples_per_class():
    labels = np.repeat(np.arange(5), 10)
    chosen = bench_few_shot.labelled_indices(labels, shots=3, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [3] * 5
    assert np.array_equal(chosen, bench_few_shot.labelled_indices(labels, shots=3, seed=0))
    assert not np.array_equal(chosen, bench_few_shot.labelled_indices(labels, shots=3, seed=1))


def test_train_step_arms_on_a_tiny_configuration(one_thread):
    """The cost-scaling benchmark's arms (its KD arm is the shared `online_kd.OnlineFeatureKDTrainer`)."""
    import argparse

    import bench_train_step

    args = argparse.Namespace(threads=1, num_coordinates=8, batch_size=2, max_steps=3, image_size=32, warmup=1)
    for arm in ("tcs", "kd-vit-ti"):
        result = bench_train_step.run_arm(arm, args)
        assert result["timed_steps"] == 2 and result["step_ms"] > 0 and result["peak_rss_mb"] > 0
    assert result["teacher_params_m"] > 5  # ViT-Ti: 5.5 M parameters
