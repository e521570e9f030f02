"""`hf_tcs.evaluation.load_metric`: `evaluate`'s metric from the Hub when it can be reached, the copy shipped in
`hf_tcs/metrics` when it cannot (offline mode, or no network)."""

from pathlib import Path

import evaluate
import pytest
from huggingface_hub import constants as hub_constants

import hf_tcs.evaluation
from hf_tcs.evaluation import load_metric

SHIPPED_ACCURACY = Path(hf_tcs.evaluation.__file__).parent / "metrics" / "accuracy" / "accuracy.py"


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """What `evaluate.load` is asked for; a Hub name (no path) fails as it does without network."""
    asked, real_load = [], evaluate.load

    def load(path, *args, **kwargs):
        asked.append(str(path))
        if not Path(path).is_file():
            raise ConnectionError(f"no network to fetch {path!r} from the Hub")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(evaluate, "load", load)
    return asked


def check_accuracy(metric) -> None:
    result = metric.compute(predictions=[0, 1, 2, 3, 1], references=[0, 1, 2, 0, 0])
    assert result == {"accuracy": pytest.approx(0.6)}


def test_offline_the_shipped_metric_is_loaded_without_asking_the_hub(loads):
    assert hub_constants.HF_HUB_OFFLINE  # set for every test by conftest
    metric = load_metric("accuracy")
    assert loads == [str(SHIPPED_ACCURACY)]
    check_accuracy(metric)


def test_online_without_network_the_shipped_metric_is_the_fallback(loads, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    metric = load_metric("accuracy")
    assert loads == ["accuracy", str(SHIPPED_ACCURACY)]
    check_accuracy(metric)
    # A metric hf_tcs does not ship has no fallback: the Hub's error is the one to see.
    with pytest.raises(ConnectionError, match="no network"):
        load_metric("f1")


def test_offline_a_metric_that_is_not_shipped_is_refused_naming_the_shipped_ones(loads):
    with pytest.raises(ValueError, match=r"'f1' needs the Hugging Face Hub, which is offline.*\['accuracy'\]"):
        load_metric("f1")
    assert loads == []
