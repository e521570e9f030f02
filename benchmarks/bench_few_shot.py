"""Practical few-shot on Banking77: a few labels per intent, with the other training texts as an unlabelled pool.

What it measures: the test accuracy (mean ± sample std over seeds) with 5 and 10 labelled texts per intent (chosen
per intent with the seed: the same labelled examples in every arm), in two settings and an opt-in third:
- `scratch`: the 2-layer BERT of bench_banking77.py from scratch, with the teacher's tokenizer; teacher
  all-MiniLM-L6-v2 (`--teacher`);
- `pretrained`: the pretrained all-MiniLM-L6-v2 weights as the student (`--student_dir`, with a new classifier) and
  all-mpnet-base-v2 as the teacher (`offline_teachers.mpnet_base_path()`, or any sentence-transformers folder as
  `--teacher_dir`; without the mpnet wheels the setting runs with `--teacher` instead, says so, and the results say
  which teacher each run had);
- `pretrained_l2` (opt-in: `--settings pretrained_l2`): all-MiniLM-L6-v2's embeddings and first 2 layers (layer
  dropping: bench_text_teachers.py's `minilm_l2`), lr 2e-4, the same teacher: a pretrained student that knows less
  than the full one, further from its teacher;
and the arms
- `ce`: cross-entropy on the labelled examples;
- `tcs_labelled`: TCS on the labelled examples only (coordinate system fitted on their features);
- `tcs_pool`: TCS with every other training text as the trainer's unlabelled pool
  (`TCSDistillationTrainer(unlabeled_dataset=...)`, the trainer's defaults): every optimizer step takes the
  labelled batch of 32 *and* 32 pool texts (`tcs_unlabeled_ratio=1`, coordinate loss only), and the coordinate
  system is fitted on the labelled + pool features;
- `teacher_probe`: the teacher's linear probe (logistic regression on the teacher features) of the labelled examples;
- diagnostics, run only when named in `--arms` (labels in `ARMS`): `tcs_pool_weight_1`, `tcs_pool_least_squares`
  (`tcs_projector_init="least_squares"`), `tcs_pool_least_squares_weight_1`, `head_only` (the least-squares TCS head
  with a coordinate weight of 1e-6: the factorised head's own effect on fine-tuning). `--curve_seed -1`: no curves.

Budget: every trained arm of a setting takes the same number of optimizer steps of batch 32 (`--max_steps` from
scratch, lr 5e-4; `--pretrained_max_steps` for the pretrained students, lr 1e-4 (2 layers: 2e-4); AdamW, 6 %
warm-up, linear decay). The runs of `--curve_seed` also evaluate on the test set at every tenth of their budget: the
accuracy-vs-steps curve (in each run's `curve`) shows whether the budget lets every arm converge. The pretrained
student's first budget, 300 steps, did not (cross-entropy seed 0: 70.81 % at 300 steps, 81.36 % at 600, flat over
its last 120); those runs are kept in bench_few_shot_archive.json. The default 600 steps from scratch are the budget
of the project's earlier prototype (cross-entropy 65.2 %, TCS 68.9 %, TCS + pool 74.4 % at 10 labels per
intent), 2.4 times the 250 steps of this benchmark's first version.

How: the harness of bench_banking77.py: the splits of each setting (teacher pass, usually from the cache, and
tokenisation) are prepared once, every setting x shots x arm x seed runs in a fresh subprocess, results go to
benchmarks/results/bench_few_shot.json after every run, and `--resume` keeps the runs of an existing file with the
same settings (runs are keyed by setting, teacher, shots, arm and seed).

Usage:
    python benchmarks/bench_few_shot.py --resume [--settings scratch pretrained [pretrained_l2]] [--shots 5 10]
        [--seeds 0 1 2] [--arms ce tcs_labelled tcs_pool] [--max_steps 600] [--pretrained_max_steps 600]
        [--curve_seed 0] [--teacher PATH] [--teacher_dir PATH] [--student_dir PATH] [--data_dir DIR]
        [--max_train_samples N] [--max_test_samples N] [--output FILE] [--in_process]
Expected duration on 2 shared CPU cores: see the `wall_s` of each run in the results file (the machine these ran on
was shared, so they are no speed claims).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import bench_banking77 as harness  # the harness: data, jobs, merging, summaries
import bench_text_teachers
import datasets
import numpy as np
import offline_teachers
from bench_train_step import peak_rss_mb
from transformers import AutoTokenizer, BertForSequenceClassification

ARMS = {
    "ce": "cross-entropy on the labelled examples",
    "tcs_labelled": "TCS on the labelled examples only",
    "tcs_pool": "TCS + unlabelled pool (per-step mixing, coordinate system on pool + labelled)",
    "teacher_probe": "teacher linear probe on the labelled examples",
    # Diagnostics, not run by default: the pool's arm with the coordinate terms weighted 1 instead of 4, and with
    # the projector fitted by least squares on the student's initial features (tcs_projector_init).
    "tcs_pool_weight_1": "TCS + unlabelled pool, coordinate loss weight 1",
    "tcs_pool_least_squares": "TCS + unlabelled pool, projector fitted by least squares at the start",
    "tcs_pool_least_squares_weight_1": "TCS + unlabelled pool, projector fitted by least squares, weight 1",
    # The TCS head (least-squares projector, classifier on its k coordinates) with a negligible coordinate loss:
    # what the factorised head alone does to cross-entropy fine-tuning.
    "head_only": "the TCS head alone: least-squares projector, coordinate loss weight 1e-6",
}
TRAINED_ARMS = ["ce", "tcs_labelled", "tcs_pool"]  # the default arms (the teacher's probe needs no training)
RUN_ORDER = [  # the goals' pair first
    "ce",
    "tcs_pool",
    "tcs_labelled",
    "tcs_pool_weight_1",
    "tcs_pool_least_squares",
    "tcs_pool_least_squares_weight_1",
    "head_only",
]
# The TCSConfig options of the arms that do not train with its defaults.
OPTIONS = {
    "ce": {"tcs_loss_weight": 0.0},
    "tcs_pool_weight_1": {"tcs_loss_weight": 1.0},
    "tcs_pool_least_squares": {"tcs_projector_init": "least_squares"},
    "tcs_pool_least_squares_weight_1": {"tcs_projector_init": "least_squares", "tcs_loss_weight": 1.0},
    "head_only": {"tcs_projector_init": "least_squares", "tcs_loss_weight": 1e-6},
}
SETTINGS = {
    "scratch": "BERT, 2 layers, hidden 256, 4 heads, from scratch, teacher's tokenizer; lr 5e-4",
    "pretrained": "pretrained all-MiniLM-L6-v2 (6 layers, hidden 384) with a new classifier; lr 1e-4",
    "pretrained_l2": "all-MiniLM-L6-v2's embeddings and first 2 layers (layer dropping, hidden 384) with a new "
    "classifier; lr 2e-4",
}
DEFAULT_SETTINGS = ["scratch", "pretrained"]
# The pretrained settings' students: bench_text_teachers.py's of the same build, at its learning rates.
PRETRAINED_STUDENTS = {"pretrained": "minilm_l6", "pretrained_l2": "minilm_l2"}
LEARNING_RATES = {
    "scratch": 5e-4,
    **{setting: bench_text_teachers.LEARNING_RATES[student] for setting, student in PRETRAINED_STUDENTS.items()},
}
COMPARED_SETTINGS = ("max_steps", "pretrained_max_steps", "train_examples", "test_examples", "data")


def labelled_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` random indices of every class (all of a class that has fewer), sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.choice(members, size=min(shots, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def split_labelled(train: datasets.Dataset, shots: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The labelled examples and the unlabelled pool: every other example, without its label column."""
    labelled = labelled_indices(np.asarray(train["label"]), shots, seed)
    rest = np.setdiff1d(np.arange(len(train)), labelled)
    return train.select(labelled), train.select(rest).remove_columns("label")


def make_student(job: dict, num_labels: int) -> BertForSequenceClassification | None:
    """The pretrained student of a `pretrained*` setting (its classifier seeded); None: the harness's scratch BERT."""
    if job["setting"] == "scratch":
        return None
    name = PRETRAINED_STUDENTS[job["setting"]]
    # vocab_size is read by the from-scratch student only.
    return bench_text_teachers.build_student(name, job["student_dir"], num_labels, job["seed"], vocab_size=0)


def run_job(job: dict) -> dict:
    """One setting x shots x arm x seed: train on the saved splits, test; time and memory of this process."""
    splits = datasets.load_from_disk(job["data"])
    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    baseline = peak_rss_mb()
    arm, seed = job["arm"], job["seed"]
    labelled, pool = split_labelled(splits["train"], job["shots"], seed)
    options = {"max_steps": job["max_steps"], "learning_rate": job["learning_rate"], **OPTIONS.get(arm, {})}
    if job["curve"]:
        options.update(eval_strategy="steps", eval_steps=max(1, job["max_steps"] // 10))
    timer = harness.StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        trainer, result = harness.train_student(
            datasets.DatasetDict({"train": labelled, "test": splits["test"]}),
            tokenizer,
            output_dir,
            seed=seed,
            callbacks=[timer],
            disable_tqdm=True,
            student=make_student(job, splits["train"].features["label"].num_classes),
            unlabeled_dataset=pool if arm.startswith("tcs_pool") else None,
            **options,
        )
    curve = [
        [entry["step"], entry["eval_accuracy"]] for entry in trainer.state.log_history if "eval_accuracy" in entry
    ]
    terms = {"projector_fit_r2": round(trainer.projector_fit_r2, 4)} if trainer.projector_fit_r2 is not None else {}
    return {
        **result,
        **terms,
        "labelled_examples": len(labelled),
        "pool_examples": len(pool) if arm.startswith("tcs_pool") else 0,
        **({"curve": curve} if job["curve"] else {}),
        **harness.step_timing(timer),
        **harness.memory_since(baseline),
    }


def summarise(runs: list[dict]) -> dict:
    """`summarise_runs` per setting and number of shots, keyed `"<setting>/<shots>"`."""
    groups = sorted({(run["setting"], run["shots"]) for run in runs})
    return {
        f"{setting}/{shots}": harness.summarise_runs(
            [run for run in runs if (run["setting"], run["shots"]) == (setting, shots)]
        )
        for setting, shots in groups
    }


def setting_sources(setting: str, args: argparse.Namespace) -> dict:
    """The teacher, tokenizer and student folders of a setting (the pretrained one falls back to `--teacher`)."""
    if setting == "scratch":
        return {"teacher": str(args.teacher), "tokenizer": str(args.teacher), "student_dir": None}
    if args.teacher_dir is not None:
        teacher = Path(args.teacher_dir)
    else:
        try:
            teacher = offline_teachers.mpnet_base_path()
        except FileNotFoundError as error:  # the wheels are not installed (`make bench-install` installs them)
            teacher = Path(args.teacher)
            print(f"{error} The pretrained setting runs with the teacher {teacher} instead.", flush=True)
    return {"teacher": str(teacher), "tokenizer": str(args.student_dir), "student_dir": str(args.student_dir)}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10], help="Labelled examples per intent.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=TRAINED_ARMS, choices=RUN_ORDER)
    parser.add_argument("--max_steps", type=int, default=600, help="Optimizer steps of every run from scratch.")
    parser.add_argument(
        "--pretrained_max_steps", type=int, default=600, help="Optimizer steps of every pretrained-student run."
    )
    parser.add_argument("--curve_seed", type=int, default=0, help="Seed whose runs record accuracy against steps.")
    parser.add_argument(
        "--teacher_dir",
        help="Teacher of the pretrained setting (default: all-mpnet-base-v2, built from its wheels by "
        "offline_teachers.mpnet_base_path(); --teacher when they are not installed).",
    )
    parser.add_argument(
        "--student_dir", default=str(harness.teacher_path()), help="Pretrained student folder (all-MiniLM-L6-v2)."
    )
    harness.add_data_arguments(parser)
    args = parser.parse_args(argv)
    if args.job:
        return harness.run_job_file(args.job, run_job)
    output = Path(args.output or harness.RESULTS / "bench_few_shot.json")

    with tempfile.TemporaryDirectory() as workspace:
        prepared = {}
        for setting in args.settings:
            sources = setting_sources(setting, args)
            # The teacher pass is bench_banking77.py's, usually served from the cache: its cost is reported there.
            data = harness.prepare_banking77(
                args, Path(workspace) / setting, False, teacher=sources["teacher"], tokenizer=sources["tokenizer"]
            )
            prepared[setting] = {**sources, **data}
        splits = next(iter(prepared.values()))["splits"]
        settings = {
            "max_steps": args.max_steps,
            "pretrained_max_steps": args.pretrained_max_steps,
            **harness.data_settings(args, splits),
            "batch_size": 32,
            "unlabeled_batch_size": 32,
            "students": SETTINGS,
            "learning_rates": LEARNING_RATES,
            "curve_seed": args.curve_seed,
            "device": "cpu",
        }
        settings.pop("teacher")  # each setting has its own teacher, recorded in `teachers` and in every run
        command = harness.command_line(__file__, argv)
        report = harness.open_report(output, "few_shot", command, settings, COMPARED_SETTINGS, args.resume)
        for key, values in (("shots", args.shots), ("seeds", args.seeds)):
            report["settings"][key] = sorted(set(report["settings"].get(key, [])) | set(values))
        report["arms"] = ARMS
        report.setdefault("teachers", {})
        for setting, data in prepared.items():
            path = Path(data["teacher"]["teacher"])
            name = harness.DEFAULT_TEACHER if path == Path(harness.teacher_path()) else path.name
            report["teachers"][setting] = {**data["teacher"], "name": name}
            report.setdefault("teacher_probe_accuracy_all_labels", {})[setting] = data["probe_accuracy"]

        # The teacher's probe on the same labelled examples: no training, computed here.
        keys = ("setting", "teacher", "shots", "arm", "seed")
        done = {tuple(run.get(key) for key in keys) for run in report["runs"]}
        for setting, data in prepared.items():
            for shots in args.shots:
                for seed in args.seeds:
                    run = {"setting": setting, "teacher": data["teacher"]["teacher"], "shots": shots}
                    run |= {"arm": "teacher_probe", "seed": seed}
                    if tuple(run[key] for key in keys) not in done:
                        labelled, _ = split_labelled(data["splits"]["train"], shots, seed)
                        report["runs"].append(
                            {**run, "test_accuracy": harness.teacher_probe(labelled, data["splits"]["test"])}
                        )
        report["summary"] = summarise(report["runs"])
        harness.write_report(report, output)

        jobs = []
        for setting, data in prepared.items():
            steps = args.max_steps if setting == "scratch" else args.pretrained_max_steps
            common = {
                "setting": setting,
                "teacher": data["teacher"]["teacher"],
                "data": data["data"],
                "tokenizer": data["tokenizer"],
                "student_dir": data["student_dir"],
                "max_steps": steps,
                "learning_rate": LEARNING_RATES[setting],
            }
            jobs += [
                {**common, "shots": shots, "arm": arm, "seed": seed, "curve": seed == args.curve_seed}
                for shots in sorted(args.shots, reverse=True)  # 10 labels per intent first: the goals are set there
                for seed in args.seeds
                for arm in sorted(args.arms, key=RUN_ORDER.index)
            ]
        harness.run_jobs(
            report,
            jobs,
            keys,
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
