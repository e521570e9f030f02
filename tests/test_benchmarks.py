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
import bench_text_teachers  # noqa: E402
import inference_cost  # noqa: E402
import report  # noqa: E402

BANKING77_ARMS = ["ce", "tcs", "online_kd", "random_basis"]
CIFAR10_ARMS = ["ce", "tcs", "online_kd", "random_basis", "tcs@views=2,k=4", "tailoring@importance=total,drop=0.5"]
TINY_RESNET_STUDENT = {"student_width": 4, "student_blocks": 1}


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
        teacher_dir=teacher_dirs["minilm"],
        output=results / "bench_few_shot.json",
    )
    few_shot = bench_few_shot.main(few_shot_args + cli(arms="tcs_pool"))
    few_shot = bench_few_shot.main(few_shot_args + cli("resume"))  # runs only the missing ce / tcs_labelled
    assert set(few_shot["summary"]) == {"scratch/2", "pretrained/2"}  # the default settings
    default_arms = {*bench_few_shot.TRAINED_ARMS, "teacher_probe"}
    assert all(set(group) == default_arms for group in few_shot["summary"].values())
    assert len(few_shot["runs"]) == 2 * 2 * 4 and len(few_shot["invocations"]) == 2
    assert {run["teacher"] for run in few_shot["runs"]} == {str(teacher_dirs["minilm"])}
    for run in few_shot["runs"]:
        if run["arm"] != "teacher_probe":
            # 2 labelled texts per intent in every arm; the pool arm adds the other 462 - 154 texts as a pool.
            assert run["labelled_examples"] == 2 * 77 and run["steps"] == 2
            assert run["pool_examples"] == (462 - 2 * 77 if run["arm"] == "tcs_pool" else 0)
            assert ("curve" in run) == (run["seed"] == 1)
    assert [step for step, _ in next(run for run in few_shot["runs"] if "curve" in run)["curve"]][:2] == [1, 2]
    # The layer-dropped student's setting, opt-in: its runs join the same file.
    few_shot = bench_few_shot.main(few_shot_args + cli("resume", settings="pretrained_l2", seeds=0, arms="ce"))
    assert set(few_shot["summary"]) == {"scratch/2", "pretrained/2", "pretrained_l2/2"}
    assert set(few_shot["summary"]["pretrained_l2/2"]) == {"ce", "teacher_probe"}

    images = cli(
        "in_process", data_dir=DATA_DIR / "cifar10_sample.parquet", max_steps=2, seeds=0, **TINY_RESNET_STUDENT
    )
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
    runs = {run["arm"]: run for run in cifar10["runs"]}
    assert runs["tcs@views=2,k=4"]["train_rows"] == 2 * 64 and runs["tcs@views=2,k=4"]["active_coordinates"] == 4
    assert runs["tcs"]["train_rows"] == 64 and runs["tcs"]["final_tcs_loss"] > 0
    assert runs["ce"]["final_tcs_loss"] is None
    assert runs["online_kd"]["kd_weight"] == 4.0
    assert cifar10["teacher_spectrum"]["feature_dim"] == 32
    # Without a teacher folder: a random DINO-shaped teacher (the smallest shape here), labelled cost only.
    random_teacher = bench_cifar10.main(
        images
        + cli(
            "random_teacher",
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
    for table, labels in ((banking77_table, bench_banking77.ARM_LABELS), (cifar10_table, cifar10["arms"])):
        assert "| teacher linear probe |" in table
        for arm in BANKING77_ARMS:
            assert f"| {labels[arm]} | " in table
    assert "One-off teacher pass over the 200 training texts (cache bypassed)" in banking77_table
    assert "Teacher features (32-d): variance explained by the leading components (1: " in cifar10_table
    tcs_loss = f"{cifar10['arms']['tcs']}: {runs['tcs']['final_tcs_loss']:.3f}"
    assert "Last logged coordinate loss: " in cifar10_table and tcs_loss in cifar10_table
    assert f"{cifar10['arms']['ce']}: " not in cifar10_table.split("Last logged coordinate loss")[1]
    # A table row per setting that ran the arm: the 2 default settings, and pretrained_l2 its ce (and probe) only.
    table_rows = {"ce": 3, "teacher_probe": 3, "tcs_labelled": 2, "tcs_pool": 2}
    assert {arm: few_shot_table.count(f"| {bench_few_shot.ARMS[arm]} | ") for arm in table_rows} == table_rows
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


def test_gpu_benchmark_smoke(tmp_path, one_thread):
    """`bench_gpu.py --smoke`: every section runs for real on tiny shapes (here on the CPU, with the CPU memory
    substitute) and its JSON and markdown carry every figure and every goal."""
    import bench_gpu

    output = tmp_path / "bench_gpu.json"
    report = bench_gpu.main(["--smoke", "--in_process", "--output", str(output)])
    assert json.loads(output.read_text()) == report and report["smoke"] is True
    assert {"device", "torch", "transformers", "datasets", "accelerate", "hf_tcs"} <= set(report["environment"])
    settings = bench_gpu.SMOKE

    rows = report["teacher_pass"]
    assert [(r["teacher_size"], r["dtype"]) for r in rows] == [
        (size, dtype) for size in ("vit-b", "vit-l") for dtype in bench_gpu.DTYPES
    ]
    for row in rows:
        assert row["examples"] == settings["num_images"] and row["loop_examples_per_s"] > 0
        assert row["precompute_examples_per_s"] > 0 and row["forward_only_images_per_s"] > 0
        assert row["peak_memory_mb"] > 0 and row["memory_source"].startswith("VmHWM")
    assert rows[2]["params_m"] > rows[0]["params_m"]  # the ViT-L shape is the bigger one
    for agreement in report["feature_agreement"].values():
        assert agreement["rows"] == 2 * settings["teacher_batch_size"] and 0.9 < agreement["cosine_min"] <= 1.0001

    arms = report["train_step"]
    assert list(arms) == bench_gpu.ARMS
    for arm, result in arms.items():
        assert result["timed_steps"] == settings["timed_steps"] and result["step_median_ms"] > 0
        assert result["compute_median_ms"] > 0 and result["peak_memory_mb"] > 0
        assert (result["teacher_params_m"] is None) == (arm in ("ce", "tcs"))
    assert arms["kd-vit-l"]["teacher_params_m"] > arms["kd-vit-b"]["teacher_params_m"]

    freed = report["teacher_freed"]
    assert freed["teacher_pass"]["teacher_pass_s"] > 0 and freed["precomputed"]["teacher_pass_s"] is None
    assert all(run["training_peak_mb"] > 0 for run in freed.values())

    assert len(report["goals"]) == 4 + 2 + 6 + 1
    assert all(goal["met"] in (True, False) for goal in report["goals"])
    summary = output.with_suffix(".md").read_text()
    assert "SMOKE" in summary and all(f"| {goal['goal']} |" in summary for goal in report["goals"])


def test_gpu_benchmark_goals():
    """Each goal compares the right figures, and a figure not measured is reported as such, not as met or missed."""
    import bench_gpu

    def arm(step, memory):
        return {"step_median_ms": step, "peak_memory_mb": memory}

    report = {
        "teacher_pass": [{"teacher_size": "vit-b", "dtype": "bfloat16", "overhead_pct": 12.0}],
        "feature_agreement": {"vit-l": {"cosine_min": 0.9995}},
        "train_step": {
            "ce": arm(100.0, 1000.0),
            "tcs": arm(104.0, 1100.0),
            "kd-vit-b": arm(200.0, 1500.0),
            "kd-vit-l": arm(400.0, None),
        },
        "teacher_freed": {"teacher_pass": {"training_peak_mb": 1005.0}, "precomputed": {"training_peak_mb": 1000.0}},
    }
    goals = {goal["goal"]: (goal["value"], goal["met"]) for goal in bench_gpu.goals(report)}
    assert goals["teacher pass overhead over the encode loop, ViT-B/16 bfloat16 (%)"] == (12.0, False)
    assert goals["bf16 vs fp32 features, ViT-L/16: lowest cosine of a row"] == (0.9995, True)
    assert goals["TCS / cross-entropy, median step time"] == (1.04, True)
    assert goals["TCS / cross-entropy, peak memory"] == (1.1, False)
    assert goals["TCS / online KD (ViT-B), median step time"] == (0.52, False)
    assert goals["TCS / online KD (ViT-L), median step time"] == (0.26, True)  # lower than with ViT-B
    assert goals["TCS / online KD (ViT-B), peak memory"] == (0.733, True)
    assert goals["TCS / online KD (ViT-L), peak memory"] == (None, None)  # not measured
    assert goals["teacher freed: training peak memory, own teacher pass / precomputed"] == (1.005, True)


def test_gpu_benchmark_cpu_memory_substitute(monkeypatch, tmp_path):
    """Without a GPU, peak memory is the resident-set high-water mark since the last reset; where it cannot be reset,
    the figure is not available (None) instead of a wrong one."""
    import bench_gpu

    if not bench_gpu.CLEAR_REFS.exists():
        pytest.skip("no /proc/self/clear_refs (not Linux)")
    memory = bench_gpu.PeakMemory(torch.device("cpu"))
    memory.reset()
    low = memory.peak_mb()
    # 128 MiB, resident once written: above glibc's largest mmap threshold (32 MiB), so fresh pages, never reused ones.
    block = np.ones(2**27 // 8)
    assert memory.peak_mb() - low > 100 and memory.current_mb() - low > 100
    del block
    memory.reset()
    assert memory.peak_mb() < low + 100  # the reset forgets the freed block
    monkeypatch.setattr(bench_gpu, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")
    memory.reset()
    assert memory.peak_mb() is None and memory.source.startswith("VmHWM")


def test_cifar10_arm_names_and_their_options():
    arm = bench_cifar10.Arm.parse("tailoring@importance=total,selection=spread,drop=0.4,k=64,weight=1")
    options = arm.options()
    assert options["tcs_importance_loss"] == "total" and options["tcs_drop_ratio"] == 0.4
    assert options["tcs_selection_steps"] == 0.2 and options["tcs_selection_rounds"] == 4
    assert options["tcs_num_components"] == 64 and options["tcs_loss_weight"] == 1.0
    assert bench_cifar10.Arm.parse("tcs@k=all").options()["tcs_num_components"] is None
    assert bench_cifar10.Arm.parse("tcs@k=0.9").options()["tcs_num_components"] == 0.9
    assert bench_cifar10.Arm.parse("ce@views=4").views == 4
    assert "importance total" in arm.label() and "k = 64" in arm.label()
    assert arm.options()["tcs_projector_init"] == "random"
    fitted = bench_cifar10.Arm.parse("tcs@init=least_squares")
    assert fitted.options()["tcs_projector_init"] == "least_squares" and "least squares" in fitted.label()
    for bad in ("tsc", "tcs@views=0", "tcs@importance=loss", "online_kd@k=8", "tcs@depth=3", "tcs@init=zeros"):
        with pytest.raises(ValueError, match="arm|Arm"):
            bench_cifar10.Arm.parse(bad)


def test_cifar10_augmentation_crops_and_flips_and_the_views_round_trip():
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(64, 3, 8, 8) * 2 - 1
    augmented = bench_cifar10.augment(pixels, generator)
    assert augmented.shape == pixels.shape
    # Every output is a shifted (by at most the padding) and maybe flipped copy, padded with black (-1).
    padded = torch.nn.functional.pad(pixels, (4,) * 4, value=-1.0)
    for image, source in zip(augmented, padded, strict=True):
        candidates = [source[:, dy : dy + 8, dx : dx + 8] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(image, c) or torch.equal(image, c.flip(-1)) for c in candidates)
    assert not torch.equal(augmented, pixels)
    # The images an online teacher reads are the student's pixels, exactly.
    quantised = torch.randint(0, 256, (2, 3, 8, 8)).float() / 255 * 2 - 1
    back = np.stack([np.asarray(image) for image in bench_cifar10.to_images(quantised)])
    torch.testing.assert_close(torch.as_tensor(back).permute(0, 3, 1, 2).float() / 255 * 2 - 1, quantised)


def test_cifar10_collator_augments_only_while_training():
    features = [{"pixel_values": np.zeros((3, 8, 8), np.float32) + i / 10, "label": i} for i in range(4)]
    collator = bench_cifar10.AugmentingCollator(True, seed=0, raw_column="image")
    batch = collator(features)
    assert (batch["pixel_values"] == -1.0).any() and len(batch["image"]) == 4  # padding shows: augmented
    collator.eval()
    batch = collator(features)
    assert "image" not in batch and torch.equal(batch["pixel_values"][1], torch.full((3, 8, 8), 0.1))


def test_text_teachers_students_arms_and_inference_cost(tmp_path, teacher_dirs, banking77_dir, one_thread):
    tiny = teacher_dirs["minilm"]  # a tiny BERT sentence encoder: teacher, tokenizer and pretrained students here
    options = dict(teacher=tiny, student_tokenizer=tiny, data_dir=banking77_dir, max_train_samples=200)
    options |= dict(max_test_samples=40, max_steps=2, latency_repeats=2, output=tmp_path / "text.json")
    data = bench_text_teachers.main(cli("in_process", **options, seeds=0, arms=["ce", "tcs", "online_kd"]))
    students = list(bench_text_teachers.STUDENTS)
    _check_arm_runs(data, [(f"{s}:{a}", 0) for s in students for a in ("ce", "tcs", "online_kd")])
    costs = data["inference"]
    for name in [*students, "teacher"]:
        assert costs[name]["parameters"] > 0 and set(costs[name]["latency"]) == {"1", "64"}
        assert costs[name]["latency"]["1"]["median_ms"] > 0
    # minilm_l2 keeps the first 2 of the (here 2-layer) encoder's layers; scratch_l2 is the 256-wide BERT.
    assert costs["scratch_l2"]["parameters"] != costs["minilm_l2"]["parameters"]
    # Every run records the last logged loss terms: the coordinate term only where the arm trains it.
    tcs_runs = [run for run in data["runs"] if run["arm"].endswith(":tcs")]
    assert all(run["last_ce_loss"] > 0 for run in data["runs"] if run["arm"].endswith((":ce", ":tcs")))
    assert tcs_runs and all(run["last_tcs_loss"] > 0 for run in tcs_runs)
    # --resume with fewer online-KD seeds: seed 1 adds only the CE run and the ablation asked for; latency is not
    # measured again.
    again = bench_text_teachers.main(
        cli(
            "in_process",
            "resume",
            **options,
            seeds=1,
            online_kd_seeds=0,
            arms=["ce", "online_kd", "tcs@weight=16"],
            students="minilm_l2",
        )
    )
    assert sorted(r["arm"] for r in again["runs"] if r["seed"] == 1) == ["minilm_l2:ce", "minilm_l2:tcs@weight=16"]
    assert again["inference"] == costs and again["teacher_pass"] == data["teacher_pass"]
    markdown = report.main(["--results", str(tmp_path)]).read_text()
    assert "Banking77 with a big teacher" in markdown and "| teacher (" in markdown


def test_gap_closed_is_the_share_of_the_way_from_cross_entropy_to_the_probe():
    assert report.gap_closed(0.80, 0.86, 0.92) == pytest.approx(0.5)
    assert report.gap_closed(0.80, 0.78, 0.90) == pytest.approx(-0.2)  # TCS below cross-entropy: negative, not hidden
    assert report.gap_closed(0.93, 0.94, 0.92) is None  # cross-entropy already above the probe: no gap to close
    assert report.gap_closed(None, 0.9, 0.92) is None


def test_inference_cost_counts_shared_parameters_once_and_restores_the_mode():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[1].weight = model[0].weight
    assert inference_cost.count_parameters(model) == 16 + 4 + 4
    model.train()
    cost = inference_cost.inference_cost(model, lambda n: {"input": torch.zeros(n, 4)}, batch_sizes=(1, 3), repeats=3)
    assert model.training and cost["latency"]["3"]["repeats"] == 3
    assert cost["latency"]["1"]["min_ms"] <= cost["latency"]["1"]["median_ms"] <= cost["latency"]["1"]["max_ms"]
    with pytest.raises(ValueError, match="at least one"):
        inference_cost.latency_ms(lambda: None, repeats=0)
