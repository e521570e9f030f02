"""Worker of tests/test_distributed.py, started by `accelerate launch` (several processes) or imported (one process).

Each process runs the teacher pass with `precompute_teacher_features` over a dataset saved with `save_to_disk`, then
over the same rows held in memory (with a fresh cache, and with `--cached-dir`, the cache of an earlier single-process
pass), and writes what it saw to `<out>/rank<r>.npz`: the feature columns, how many rows its teacher encoded, and,
with `--train`, the coordinate system and (rank 0) the final student weights of a `TCSDistillationTrainer` run that
loads the teacher itself (with `--pool N`, the last N rows are an unlabelled pool without teacher features). With
`--main-first` the passes run inside `TrainingArguments.main_process_first()` instead (the transformers examples'
idiom), and with `--unmatched-pass` rank 1 then runs one more pass that rank 0 does not. An error is also written to
`<out>/error-rank<r>.txt` before the process exits with it.
"""

import argparse
import contextlib
import os
import sys
import traceback
from pathlib import Path

import datasets
import numpy as np
from transformers import TrainingArguments

import hf_tcs.distributed
from hf_tcs import TCSConfig, TCSDistillationTrainer, load_teacher, precompute_teacher_features
from hf_tcs.teachers import Teacher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the shared tiny models
from helpers import TINY_RUN  # noqa: E402
from tiny_models import make_student  # noqa: E402


def count_encoded_rows() -> list[int]:
    """Record the batch size of every teacher forward in this process, whichever `Teacher` runs it."""
    rows, encode = [], Teacher.encode

    def counting_encode(self, batch):
        rows.append(len(batch))
        return encode(self, batch)

    Teacher.encode = counting_encode
    return rows


def features_of(dataset: datasets.Dataset) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")["teacher_features"])


def logged_losses(trainer: TCSDistillationTrainer, names=("ce_loss", "tcs_loss")) -> np.ndarray:
    """The loss terms (`names`) the trainer logged at each step."""
    history = trainer.state.log_history
    return np.array([[entry[name] for name in names] for entry in history if "tcs_loss" in entry])


def make_trainer(
    data: str, teacher: str, output_dir: str, batch_size: int, pool: int = 0, **config
) -> TCSDistillationTrainer:
    """A tiny ViT student distilled from `teacher` (loaded by the trainer) for 4 SGD steps; `config` overrides.

    With `pool`, the last `pool` rows are an unlabelled pool (no label column), added to every batch."""
    student = make_student(seed=0)
    settings = dict(
        teacher_model_name_or_path=teacher,
        tcs_num_components=16,
        per_device_train_batch_size=batch_size,
        max_steps=4,
        optim="sgd",
        learning_rate=0.1,
        lr_scheduler_type="constant",
        dataloader_drop_last=True,
        ddp_find_unused_parameters=False,
        **TINY_RUN,
    )
    args = TCSConfig(output_dir=output_dir, **{**settings, **config})
    dataset = datasets.load_from_disk(data)
    if not pool:
        return TCSDistillationTrainer(model=student, args=args, train_dataset=dataset)
    labelled, unlabelled = (
        dataset.select(range(len(dataset) - pool)),
        dataset.select(range(len(dataset) - pool, len(dataset))),
    )
    return TCSDistillationTrainer(
        model=student, args=args, train_dataset=labelled, unlabeled_dataset=unlabelled.remove_columns("label")
    )


def main(
    data: str,
    teacher: str,
    out: Path,
    train: bool,
    batch_size: int,
    cached_dir: str | None,
    main_first: bool = False,
    unmatched_pass: bool = False,
    pool: int = 0,
) -> None:
    rank = int(os.environ.get("RANK", "0"))
    rows = count_encoded_rows()
    encoder = load_teacher(teacher, device="cpu")
    results = {}
    idiom = contextlib.nullcontext()
    if main_first:
        idiom = TrainingArguments(str(out / "args"), use_cpu=True, report_to="none").main_process_first()

    def teacher_pass(name: str, dataset: datasets.Dataset, **kwargs) -> None:
        """Record the features of one teacher pass and how many rows this process encoded for it."""
        before = sum(rows)
        results[f"{name}_features"] = features_of(precompute_teacher_features(dataset, encoder, **kwargs))
        results[f"{name}_rows"] = sum(rows) - before

    with idiom:
        teacher_pass("disk", datasets.load_from_disk(data))
        # Not file-backed: the features are cached under `cache_dir`, not next to the dataset's files.
        teacher_pass("memory", datasets.load_from_disk(data, keep_in_memory=True), cache_dir=out / "memory_cache")
    if cached_dir:
        teacher_pass("cached", datasets.load_from_disk(data, keep_in_memory=True), cache_dir=cached_dir)
    if train:
        before = sum(rows)
        trainer = make_trainer(data, teacher, str(out / "trainer"), batch_size, pool)
        results["trainer_rows"] = sum(rows) - before
        cs = trainer.coordinate_system
        results.update(mean=cs.mean, components=cs.components, eigenvalues=cs.eigenvalues)
        trainer.train()
        names = ("ce_loss", "tcs_loss", "tcs_unlabeled_loss") if pool else ("ce_loss", "tcs_loss")
        results["losses"] = logged_losses(trainer, names)
        if rank == 0:
            state = {name: tensor.detach().numpy() for name, tensor in trainer.model.state_dict().items()}
            np.savez(out / "weights.npz", **state)
    np.savez(out / f"rank{rank}.npz", **results)
    if unmatched_pass and rank == 1:
        precompute_teacher_features(datasets.load_from_disk(data).select(range(8)), encoder)
    hf_tcs.distributed.end_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cached-dir", help="cache_dir holding a single-process teacher pass of the rows in memory")
    parser.add_argument("--main-first", action="store_true", help="run the passes inside main_process_first()")
    parser.add_argument("--unmatched-pass", action="store_true", help="rank 1 runs a pass that rank 0 does not")
    parser.add_argument("--wait", type=float, help="seconds a process waits for the others to enter a teacher pass")
    parser.add_argument("--pool", type=int, default=0, help="train with the last N rows as an unlabelled pool")
    cli = parser.parse_args()
    datasets.disable_progress_bars()
    if cli.wait is not None:
        hf_tcs.distributed.ARRIVAL_TIMEOUT = hf_tcs.distributed.MAIN_PROCESS_TIMEOUT = cli.wait
    try:
        main(
            cli.data,
            cli.teacher,
            cli.out,
            cli.train,
            cli.batch_size,
            cli.cached_dir,
            cli.main_first,
            cli.unmatched_pass,
            cli.pool,
        )
    except Exception:
        (cli.out / f"error-rank{os.environ.get('RANK', '0')}.txt").write_text(traceback.format_exc())
        raise
