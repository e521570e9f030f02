import dataclasses
import io
import signal
import subprocess
import sys
import time

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_tcs import load_teacher, precompute_teacher_features


@pytest.fixture(scope="module")
def dino(teacher_dirs):
    return load_teacher(teacher_dirs["dino"])


@pytest.fixture(scope="module")
def minilm(teacher_dirs):
    return load_teacher(teacher_dirs["minilm"])


def count_forwards(monkeypatch, teacher) -> list[int]:
    """Record the batch size of every teacher forward."""
    calls, encode = [], teacher.encode

    def counting_encode(batch):
        calls.append(len(batch))
        return encode(batch)

    monkeypatch.setattr(teacher, "encode", counting_encode)
    return calls


def features_of(dataset, column="teacher_features") -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[:][column])


def test_image_features_are_the_teachers_fixed_length_float32(dino, cifar10_sample):
    images = cifar10_sample.select(range(40))
    out = precompute_teacher_features(images, dino, batch_size=16)
    assert out.column_names == ["image", "label", "teacher_features"]
    column = out.features["teacher_features"]  # its value type's `id` records the teacher (test_provenance.py)
    assert isinstance(column, datasets.List) and column.length == 32 and column.feature.dtype == "float32"
    assert out.features["image"] == images.features["image"]  # still decodes to PIL images
    features = features_of(out)
    assert features.dtype == np.float32 and features.shape == (40, 32)
    np.testing.assert_allclose(features, dino.encode(images[:]["image"]), atol=1e-6)
    # the user's dataset is untouched
    assert images.column_names == ["image", "label"]


def test_text_features_and_dataset_dict(minilm, banking77_sample):
    splits = datasets.DatasetDict(
        {"train": banking77_sample.select(range(30)), "test": banking77_sample.select(range(30, 40))}
    )
    out = precompute_teacher_features(splits, minilm)
    assert set(out) == {"train", "test"}
    assert features_of(out["test"]).shape == (10, 32)
    np.testing.assert_allclose(features_of(out["train"]), minilm.encode(splits["train"]["text"][:]), atol=1e-6)
    # sentence-transformers' Normalize module is honoured
    np.testing.assert_allclose(np.linalg.norm(features_of(out["train"]), axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("backing", ["file", "memory"])
def test_second_call_is_served_from_cache_without_teacher_forward(
    backing, dino, cifar10_sample, monkeypatch, tmp_path
):
    images = cifar10_sample.select(range(24))
    if backing == "memory":
        images = datasets.Dataset.from_dict(images.to_dict(), features=images.features)
        assert not images.cache_files
    else:
        images.save_to_disk(tmp_path / "images")
        images = datasets.load_from_disk(tmp_path / "images")
    calls = count_forwards(monkeypatch, dino)
    first = precompute_teacher_features(images, dino, batch_size=8)
    assert calls == [8, 8, 8]
    second = precompute_teacher_features(images, dino, batch_size=8)
    assert calls == [8, 8, 8], "the second call must not run the teacher"
    np.testing.assert_array_equal(features_of(first), features_of(second))
    assert first._fingerprint == second._fingerprint


def test_other_teacher_revision_or_pooling_recomputes(teacher_dirs, dino, cifar10_sample, monkeypatch):
    images = cifar10_sample.select(range(8))
    precompute_teacher_features(images, dino)
    for other in (
        dataclasses.replace(dino, revision="refs/pr/1"),
        load_teacher(teacher_dirs["dino"], pooling="mean"),
        load_teacher(teacher_dirs["dinov2"]),
    ):
        calls = count_forwards(monkeypatch, other)
        precompute_teacher_features(images, other)
        assert calls == [8], f"{other.to_dict()} must not reuse another teacher's features"


def test_input_column_detection_and_errors(dino, minilm, cifar10_sample, banking77_sample):
    images = cifar10_sample.select(range(4))
    with pytest.raises(ValueError, match="'pixels' is not in the dataset"):
        precompute_teacher_features(images, dino, input_column="pixels")
    with pytest.raises(ValueError, match="needs an image column"):
        precompute_teacher_features(images, dino, input_column="label")
    with pytest.raises(ValueError, match="needs a text column .* has none"):
        precompute_teacher_features(images, minilm)
    two_texts = banking77_sample.select(range(4)).add_column("title", ["a", "b", "c", "d"])
    out = precompute_teacher_features(two_texts, minilm)  # `text` is preferred among string columns
    np.testing.assert_allclose(features_of(out), minilm.encode(two_texts["text"][:]), atol=1e-6)
    ambiguous = two_texts.rename_column("text", "utterance")
    with pytest.raises(ValueError, match="several"):
        precompute_teacher_features(ambiguous, minilm)
    with pytest.raises(ValueError, match="empty"):
        precompute_teacher_features(images.select([]), dino)
    with pytest.raises(ValueError, match="already has a column 'teacher_features'"):
        precompute_teacher_features(precompute_teacher_features(images, dino), dino)


def test_broken_image_is_reported_by_row_and_nothing_is_lost(dino):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PNG")
    rows = {"image": [{"bytes": buffer.getvalue(), "path": None}] * 3, "label": [0, 1, 2]}
    rows["image"][2] = {"bytes": b"not an image", "path": None}
    dataset = datasets.Dataset.from_dict(
        rows, features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    )
    with pytest.raises(ValueError, match="Row 2 of column 'image' could not be decoded"):
        precompute_teacher_features(dataset, dino)
    assert dataset.column_names == ["image", "label"] and len(dataset) == 3


def test_missing_text_and_non_finite_features_are_reported(minilm, banking77_sample, monkeypatch):
    texts = datasets.Dataset.from_dict({"text": ["hello", None, "bye"]})
    with pytest.raises(ValueError, match="Row 1 of column 'text' is None"):
        precompute_teacher_features(texts, minilm)

    def nan_encode(batch):
        features = np.zeros((len(batch), minilm.feature_dim), dtype=np.float32)
        features[1] = np.nan
        return features

    monkeypatch.setattr(minilm, "encode", nan_encode)
    with pytest.raises(ValueError, match=r"NaN/inf features for 1 example\(s\) \(rows \[1\]"):
        precompute_teacher_features(banking77_sample.select(range(3)), minilm)


def test_a_cached_file_that_does_not_match_its_input_is_recomputed(dino, cifar10_sample, monkeypatch, tmp_path):
    images = datasets.Dataset.from_dict(cifar10_sample.select(range(16)).to_dict(), features=cifar10_sample.features)
    expected = features_of(precompute_teacher_features(images, dino, cache_dir=tmp_path))
    (cache_file,) = tmp_path.glob("teacher-features-*.arrow")
    short = precompute_teacher_features(images.select(range(10)), dino, cache_dir=tmp_path / "short")
    (short_file,) = (tmp_path / "short").glob("*.arrow")
    calls = count_forwards(monkeypatch, dino)

    def damaged(damage) -> np.ndarray:
        damage()
        return features_of(precompute_teacher_features(images, dino, cache_dir=tmp_path))

    # A partial copy with another pass's 10 rows, then a file cut short in the middle.
    np.testing.assert_allclose(damaged(lambda: cache_file.write_bytes(short_file.read_bytes())), expected, atol=1e-6)
    assert sum(calls) == 16, "the short file must be recomputed, not served"
    size = cache_file.stat().st_size
    np.testing.assert_allclose(damaged(lambda: cache_file.write_bytes(cache_file.read_bytes()[: size // 2])), expected)
    assert sum(calls) == 32 and len(short) == 10


def test_an_interrupted_pass_leaves_no_partial_file_in_the_cache(
    dino, teacher_dirs, cifar10_sample, monkeypatch, tmp_path
):
    images = datasets.Dataset.from_dict(cifar10_sample.select(range(24)).to_dict(), features=cifar10_sample.features)
    images.save_to_disk(tmp_path / "images")
    # An error in the middle of the pass.
    calls, encode = [], dino.encode

    def failing_encode(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return encode(batch)

    monkeypatch.setattr(dino, "encode", failing_encode)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="interrupted"):
        precompute_teacher_features(images, dino, batch_size=4, cache_dir=cache)
    assert calls == [4, 4] and not list(cache.glob("tmp*"))

    # SIGTERM, what `accelerate launch` / `torchrun` send every process when one fails or the user presses Ctrl-C.
    script = f"""
import time, datasets
from hf_tcs import load_teacher, precompute_teacher_features
teacher = load_teacher({str(teacher_dirs["dino"])!r})
encode = teacher.encode
teacher.encode = lambda batch: (time.sleep(0.5), encode(batch))[1]
precompute_teacher_features(datasets.load_from_disk({str(tmp_path / "images")!r}), teacher, batch_size=2)
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "images").glob("tmp*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"the pass must still be running: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) != 0
    assert not list((tmp_path / "images").glob("tmp*")), "the half-written file must be removed"
    assert not list((tmp_path / "images").glob("cache-*.arrow"))
