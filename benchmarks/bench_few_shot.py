"""Practical few-shot on Banking77: a few labels per intent, with and without the rest of the training set unlabelled.

What it measures: the test accuracy (mean ± sample std over seeds) of the 2-layer BERT student of bench_banking77.py
with 5 and 10 labelled texts per intent (chosen per intent with the seed; the same labelled set in every arm), in the
arms
- `ce`: cross-entropy on the labelled examples;
- `tcs_labelled`: TCS on the labelled examples only (their own coordinate system);
- `tcs_pool`: TCS on the labelled examples plus every other training text as an unlabelled pool (label -100: the
  coordinate loss only), with the coordinate system fitted on the features of the whole training set (pool +
  labelled);
- `tcs_pool_cs_labelled`: the same data, the coordinate system fitted on the labelled examples' features only;
and the teacher's linear probe trained on the same labelled examples (`teacher_probe`, logistic regression on their
teacher features). The teacher pass over the whole training set is the same as bench_banking77.py's (cached).

Budget: every arm trains for the same number of optimizer steps (`--max_steps`, default 250, batch 32, AdamW lr 5e-4
with 6 % warm-up and linear decay): the labelled-only arms see their 385 / 770 examples about 21 / 10 times; in the
pool arms the labelled set is repeated so that it makes half of the training stream (`--labelled_share 0.5`; the
natural share, 4 / 8 %, would let the pool crowd out the labels), which gives them half the labelled passes and about
0.4 pass over the pool.

How: as bench_banking77.py (the harness is its own): the splits are prepared once, every shots x arm x seed runs in a
fresh subprocess, results go to benchmarks/results/bench_few_shot.json after every run, `--resume` keeps the runs of
an existing file with the same settings.

Usage:
    python benchmarks/bench_few_shot.py --resume [--shots 5 10] [--seeds 0 1 2] [--max_steps 250]
        [--arms ce tcs_labelled tcs_pool tcs_pool_cs_labelled] [--labelled_share 0.5]
        [--teacher PATH] [--data_dir DIR] [--max_train_samples N] [--max_test_samples N] [--output FILE] [--in_process]
Expected duration on 2 CPU cores: about 50 s per run (40 s of training, start-up and test), 24 runs: about 20 min.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import bench_banking77 as harness  # the harness: data, jobs, merging, summaries
import datasets
import numpy as np
from bench_train_step import peak_rss_mb
from transformers import AutoTokenizer

from hf_tcs import CoordinateSystem, TCSConfig

ARMS = {
    "ce": "cross-entropy on the labelled examples",
    "tcs_labelled": "TCS on the labelled examples only",
    "tcs_pool": "TCS + unlabelled pool, coordinate system fitted on pool + labelled",
    "tcs_pool_cs_labelled": "TCS + unlabelled pool, coordinate system fitted on the labelled examples",
    "teacher_probe": "teacher linear probe on the labelled examples",
}
TRAINED_ARMS = [arm for arm in ARMS if arm != "teacher_probe"]
COMPARED_SETTINGS = ("max_steps", "labelled_share", "train_examples", "test_examples", "teacher", "data")
NUM_COMPONENTS = TCSConfig.__dataclass_fields__["tcs_num_components"].default
UNLABELLED = -100


def labelled_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` random indices of every class (all of a class that has fewer), sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.choice(members, size=min(shots, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def split_labelled(train: datasets.Dataset, shots: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The labelled examples and the unlabelled pool (every other example, label -100)."""
    labelled = labelled_indices(np.asarray(train["label"]), shots, seed)
    rest = np.setdiff1d(np.arange(len(train)), labelled)
    pool = train.select(rest).map(lambda batch: {"label": [UNLABELLED] * len(batch["label"])}, batched=True)
    return train.select(labelled), pool


def training_set(arm: str, train: datasets.Dataset, shots: int, seed: int, labelled_share: float):
    """The training set of an arm, and the coordinate system to train it with (None: the trainer fits its own)."""
    labelled, pool = split_labelled(train, shots, seed)
    if arm in ("ce", "tcs_labelled"):
        return labelled, None
    repeats = (
        1 if labelled_share <= 0 else max(1, round(labelled_share / (1 - labelled_share) * len(pool) / len(labelled)))
    )
    mixed = datasets.concatenate_datasets([labelled] * repeats + [pool])
    fit_on = train if arm == "tcs_pool" else labelled
    return mixed, CoordinateSystem.fit(fit_on, num_components=NUM_COMPONENTS)


def run_job(job: dict) -> dict:
    """One shots x arm x seed: train on the saved splits, test; time and memory of this process."""
    splits = datasets.load_from_disk(job["data"])
    tokenizer = AutoTokenizer.from_pretrained(job["teacher_path"])
    baseline = peak_rss_mb()
    arm, seed = job["arm"], job["seed"]
    train, coordinate_system = training_set(arm, splits["train"], job["shots"], seed, job["labelled_share"])
    options = {"tcs_loss_weight": 0.0} if arm == "ce" else {}
    timer = harness.StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        _, result = harness.train_student(
            datasets.DatasetDict({"train": train, "test": splits["test"]}),
            tokenizer,
            output_dir,
            seed=seed,
            max_steps=job["max_steps"],
            coordinate_system=coordinate_system,
            callbacks=[timer],
            disable_tqdm=True,
            **options,
        )
    return {**result, "train_examples": len(train), **harness.step_timing(timer), **harness.memory_since(baseline)}


def summarise(runs: list[dict]) -> dict:
    """`summarise_runs` per number of shots."""
    shots = sorted({run["shots"] for run in runs})
    return {str(s): harness.summarise_runs([run for run in runs if run["shots"] == s]) for s in shots}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10], help="Labelled examples per intent.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=TRAINED_ARMS, choices=TRAINED_ARMS)
    parser.add_argument("--max_steps", type=int, default=250, help="Optimizer steps of every run.")
    parser.add_argument(
        "--labelled_share", type=float, default=0.5, help="Share of labelled examples in the pool arms (0: natural)."
    )
    harness.add_data_arguments(parser)
    args = parser.parse_args(argv)
    if args.job:
        return harness.run_job_file(args.job, run_job)
    if not 0 <= args.labelled_share < 1:
        parser.error("--labelled_share must be in [0, 1).")
    output = Path(args.output or harness.RESULTS / "bench_few_shot.json")

    with tempfile.TemporaryDirectory() as workspace:
        # The teacher pass is bench_banking77.py's, usually served from the cache: its cost is reported there.
        data = harness.prepare_banking77(args, Path(workspace), fresh_teacher_pass=False)
        splits = data["splits"]
        settings = {
            "max_steps": args.max_steps,
            "labelled_share": args.labelled_share,
            **harness.data_settings(args, splits),
            "batch_size": 32,
            "learning_rate": 5e-4,
            "student": "BERT, 2 layers, hidden 256, 4 heads, from scratch, teacher's tokenizer",
            "device": "cpu",
        }
        command = harness.command_line(__file__, argv)
        report = harness.open_report(output, "few_shot", command, settings, COMPARED_SETTINGS, args.resume)
        for key, values in (("shots", args.shots), ("seeds", args.seeds)):
            report["settings"][key] = sorted(set(report["settings"].get(key, [])) | set(values))
        report |= {
            "arms": ARMS,
            "teacher": data["teacher"],
            "teacher_probe_accuracy_all_labels": data["probe_accuracy"],
        }

        # The teacher's probe on the same labelled examples: no training, computed here.
        done = {(run["shots"], run["seed"]) for run in report["runs"] if run["arm"] == "teacher_probe"}
        for shots in args.shots:
            for seed in args.seeds:
                if (shots, seed) not in done:
                    labelled, _ = split_labelled(splits["train"], shots, seed)
                    accuracy = harness.teacher_probe(labelled, splits["test"])
                    report["runs"].append(
                        {"shots": shots, "arm": "teacher_probe", "seed": seed, "test_accuracy": accuracy}
                    )
        report["summary"] = summarise(report["runs"])
        harness.write_report(report, output)

        common = {
            "data": str(Path(workspace) / "splits"),
            "teacher_path": str(args.teacher),
            "max_steps": args.max_steps,
            "labelled_share": args.labelled_share,
        }
        jobs = [
            {"shots": shots, "arm": arm, "seed": seed, **common}
            for shots in args.shots
            for seed in args.seeds
            for arm in args.arms
        ]
        harness.run_jobs(
            report,
            jobs,
            ("shots", "arm", "seed"),
            output,
            Path(__file__),
            run_job,
            summarise,
            in_process=args.in_process,
            remeasure=args.remeasure,
        )

    harness.print_summary(report, output)
    return report


if __name__ == "__main__":
    main()
