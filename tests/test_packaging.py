"""The package as PyPI would ship it: the sdist of a fresh checkout builds the wheel, and the wheel installs and works
without the source tree (its templates and offline metrics inside).

Built with setuptools' PEP 517 backend directly (no network, no build isolation), installed with `pip --target`
without dependencies: the project's environment already has them.
"""

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE_DATA = (
    "hf_tcs/templates/model_card.md",
    "hf_tcs/templates/dataset_card.md",
    "hf_tcs/metrics/accuracy/accuracy.py",
)

# Run in the installed copy only: import it, render a card from the shipped template, score with the shipped metric.
SMOKE = """
import importlib.metadata, os, sys
import hf_tcs
from hf_tcs.evaluation import load_metric
from hf_tcs.model_card import TCSModelCardData
assert hf_tcs.__file__.startswith(sys.argv[1]), hf_tcs.__file__
card = TCSModelCardData.from_fields(model_name="smoke", license="apache-2.0").render()
assert "What TCS assumes" in card.text and card.data.license == "apache-2.0"
assert load_metric("accuracy").compute(predictions=[0, 1], references=[0, 0])["accuracy"] == 0.5
print(hf_tcs.__version__)
"""


def build(backend_call: str, source: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{backend_call}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, check=True)
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The files a fresh clone has: git's tracked files, and the new ones not ignored, as in the working tree."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files a clone has")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    copy = tmp_path_factory.mktemp("checkout")
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def test_sdist_builds_a_wheel_that_installs_and_runs_without_the_source_tree(checkout, tmp_path):
    sdist = build("build_sdist", checkout, tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert {"setup.py", "README.md", *(f"src/{name}" for name in PACKAGE_DATA)} <= names
    assert {f"src/hf_tcs/{path.name}" for path in (ROOT / "src/hf_tcs").glob("*.py")} <= names
    assert not [name for name in names if name.startswith("tests/")]

    # The wheel is built from the unpacked sdist: what PyPI users building from source get.
    [source] = (tmp_path / "unpacked").iterdir()
    wheel = build("build_wheel", source, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert set(PACKAGE_DATA) <= names
    assert "hf-tcs = hf_tcs.cli:main" in entry_points

    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", SMOKE, str(site)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    version = (ROOT / "src/hf_tcs/version.py").read_text().split('__version__ = "')[1].split('"')[0]
    assert done.stdout.strip().splitlines()[-1] == version
