"""The `hf-tcs` console script: help, one-line errors, `--config`, and each command end to end on tiny data.

The commands run in this process (`hf_tcs.cli.main(argv)`) with tiny random teachers and students; one test runs
`hf-tcs distill` in two processes under `accelerate launch`, and one publishes through the local Hub server.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from string import Template

import datasets
import numpy as np
import pytest
import torch
import yaml
from test_distributed import kill_launch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TimmWrapperForImageClassification,
    ViTForImageClassification,
)

from hf_tcs import CoordinateSystem, TCSConfig
from hf_tcs.cli import COMMANDS, command_parser, main, run
from hf_tcs.columns import find_input_column
from hf_tcs.data import DataArguments, encode_labels
from hf_tcs.jobs import build_trainer, prepare_task
from hf_tcs.models import StudentArguments, load_processor, load_student
from hf_tcs.names import parse_model_name

DATA_DIR = Path(__file__).parent / "data"
CIFAR10 = str(DATA_DIR / "cifar10_sample.parquet")
ACCELERATE_CONFIGS = Path(__file__).parent.parent / "examples" / "accelerate_configs"
BANKING77 = str(DATA_DIR / "banking77_sample.csv")
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
VIT_STUDENT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 8,
}
BERT_STUDENT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def training_args(output_dir: Path, max_steps: int = 2) -> list[str]:
    """A few CPU steps, quiet, saving only the final student."""
    return [
        *("--output_dir", str(output_dir), "--max_steps", str(max_steps), "--per_device_train_batch_size", "8"),
        *("--use_cpu", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"),
        *("--tcs_num_components", "8", "--log_level", "warning"),
    ]


def image_job(teacher_dirs, output_dir: Path, student: str = "vit") -> list[str]:
    """32 CIFAR-10 training images, 16 for evaluation, the tiny DINO teacher and a student."""
    student_config = ["--student_config", json.dumps(VIT_STUDENT)] if student == "vit" else []
    return [
        *(
            "--train_file",
            CIFAR10,
            "--validation_file",
            CIFAR10,
            "--max_train_samples",
            "32",
            "--max_eval_samples",
            "16",
        ),
        *("--teacher_model_name_or_path", str(teacher_dirs["dino"]), "--student_model_name_or_path", student),
        *student_config,
        "--augment",
        *training_args(output_dir),
    ]


def text_job(teacher_dirs, output_dir: Path) -> list[str]:
    """64 Banking77 training texts, 32 for evaluation, the tiny sentence-encoder teacher and a tiny BERT student."""
    return [
        *("--train_file", BANKING77, "--validation_file", BANKING77, "--label_column", "category"),
        *("--max_train_samples", "64", "--max_eval_samples", "32"),
        *("--teacher_model_name_or_path", str(teacher_dirs["minilm"]), "--student_model_name_or_path", "bert"),
        *("--student_config", json.dumps(BERT_STUDENT)),
        *training_args(output_dir),
    ]


def exit_code(argv: list[str]) -> int:
    """`hf-tcs ARGV`'s exit status, whether argparse exits or main returns."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def check_image_student(output_dir: Path, image) -> None:
    """The saved student loads with transformers alone and classifies an image into the 10 CIFAR-10 classes."""
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    processor = AutoImageProcessor.from_pretrained(output_dir)
    with torch.no_grad():
        logits = model(**processor(images=[image.convert("RGB")], return_tensors="pt")).logits
    assert logits.shape == (1, 10)
    assert [model.config.id2label[i] for i in range(10)] == CIFAR10_NAMES


# ---- Help and errors --------------------------------------------------------------------------------------------


def test_console_script_is_installed():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "hf-tcs"]
    assert script.value == "hf_tcs.cli:main"


def test_help_lists_the_commands(capsys):
    assert exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"    {name}" in out for name in ("precompute", "distill", "push"))
    assert "--config" in out and "accelerate launch" in out


@pytest.mark.parametrize("command", ["precompute", "distill", "push"])
def test_command_help_lists_every_argument_with_its_help(command, capsys):
    assert exit_code([command, "--help"]) == 0
    out = capsys.readouterr().out
    used = COMMANDS[command].config_fields
    fields = [f for cls in COMMANDS[command].dataclass_types for f in dataclasses.fields(cls) if f.init]
    fields = [f for f in fields if used is None or f.name in used or f.name not in TCSConfig.__dataclass_fields__]
    assert not [f.name for f in fields if f"--{f.name}" not in out]
    assert "--config FILE.yaml" in out
    if command == "distill":
        flat = " ".join(out.split())
        assert TCSConfig.__dataclass_fields__["tcs_loss_weight"].metadata["help"] in flat
        assert len(fields) > len(dataclasses.fields(DataArguments)) + 100  # TrainingArguments' fields are there


@pytest.mark.parametrize(
    "command, message",
    [
        ("distill --bogus 1", "unrecognized arguments: --bogus 1"),
        ("bogus", "invalid choice: 'bogus'"),
        ("distill --train_file $cifar --output_dir $tmp", "--student_model_name_or_path is required"),
        ("distill $vit --student_config {no-json --train_file $cifar", "not valid JSON"),
        (
            "distill $vit --train_file $cifar --tcs_loss_weight -1 --output_dir $tmp",
            "tcs_loss_weight=-1.0 is negative",
        ),
        ("distill $vit --train_file $tmp/missing.csv --output_dir $tmp --use_cpu", "missing.csv' does not exist"),
        ("distill $vit --train_file $banking --label_column intent --output_dir $tmp --use_cpu", "no 'intent' column"),
        ("push $tmp", "--hub_model_id is required"),
    ],
)
def test_a_bad_argument_is_a_one_line_error_without_traceback(command, message, tmp_path, capsys):
    values = dict(tmp=tmp_path, cifar=CIFAR10, banking=BANKING77, vit="--student_model_name_or_path vit")
    assert exit_code(Template(command).substitute(values).split()) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("hf-tcs") and message in errors[0]
    assert "Traceback" not in err


def test_an_unexpected_error_keeps_its_traceback():
    def job(*args, **kwargs):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run(job, command_parser("push"), ["folder", "--hub_model_id", "user/model"])


# ---- --config ---------------------------------------------------------------------------------------------------


def test_config_file_sets_defaults_and_the_command_line_overrides_them(tmp_path):
    path = tmp_path / "job.yaml"
    values = {
        "train_file": CIFAR10,
        "student_model_name_or_path": "vit",
        "student_config": VIT_STUDENT,
        "augment": True,
        "learning_rate": 0.01,
        "max_steps": 5,
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
    }
    path.write_text(yaml.safe_dump(values))
    parser = command_parser("distill")
    (data, student, config, _), _ = parser.parse_args_and_config(["--config", str(path), "--max_steps", "2"])
    assert config.max_steps == 2 and config.learning_rate == 0.01 and config.output_dir == values["output_dir"]
    assert data.train_file == CIFAR10 and student.augment and student.student_config == VIT_STUDENT


def test_config_file_with_an_unknown_argument_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("train_file: data.csv\nlearning_rat: 0.1\n")
    assert exit_code(["distill", "--config", str(path)]) == 2
    assert "sets unknown arguments ['learning_rat']" in capsys.readouterr().err


def test_the_example_config_file_parses():
    config_file = Path(__file__).parent.parent / "examples" / "configs" / "cifar10_dino.yaml"
    argv = ["--config", str(config_file), "--bf16", "false", "--use_cpu"]
    (data, student, config, _), _ = command_parser("distill").parse_args_and_config(argv)
    assert data.dataset_name == "uoft-cs/cifar10" and student.augment and config.teacher_dtype == "bfloat16"


# ---- Building blocks --------------------------------------------------------------------------------------------


def test_labels_are_named_from_class_labels_strings_or_ints():
    names = ["cat", "dog"]
    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": ["a", "b", "c"], "intent": ["dog", "cat", None]}),
        test=datasets.Dataset.from_dict({"text": ["d"], "intent": ["bird"]}),
    )
    encoded, found = encode_labels(splits, "intent")
    assert found == ["bird", "cat", "dog"]
    assert encoded["train"]["label"][:] == [2, 1, -100] and encoded["test"]["label"][:] == [0]

    ints = datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": ["a", "b"], "label": [10, 2]}))
    encoded, found = encode_labels(ints)
    assert found == ["2", "10"] and encoded["train"]["label"][:] == [1, 0]
    assert isinstance(encoded["train"].features["label"], datasets.ClassLabel)

    kept = datasets.Dataset.from_dict({"text": ["a"], "y": [1]}).cast_column("y", datasets.ClassLabel(names=names))
    encoded, found = encode_labels(datasets.DatasetDict(train=kept), "y")
    assert found == names and encoded["train"].column_names == ["text", "label"]
    with pytest.raises(ValueError, match="no 'label' or 'labels' column"):
        encode_labels(datasets.DatasetDict(train=kept))


def test_input_column_is_detected_or_checked(cifar10_sample, banking77_sample):
    assert find_input_column(cifar10_sample) == ("image", "image")
    assert find_input_column(banking77_sample) == ("text", "text")
    with pytest.raises(ValueError, match="holds"):
        find_input_column(cifar10_sample, "label")


def test_students_by_hub_folder_transformers_architecture_or_timm_architecture(teacher_dirs, tmp_path):
    labels = ["a", "b", "c"]
    assert parse_model_name("vit").kind == "architecture" and parse_model_name("resnet18").kind == "timm_registry"
    assert parse_model_name("facebook/deit-tiny-patch16-224").kind == "hub"

    processor = AutoImageProcessor.from_pretrained(teacher_dirs["dino"])
    vit = load_student("vit", modality="image", label_names=labels, config_overrides=VIT_STUDENT, processor=processor)
    assert isinstance(vit, ViTForImageClassification) and vit.config.image_size == 32 and vit.config.num_labels == 3

    timm_student = load_student("resnet10t", modality="image", label_names=labels)
    assert isinstance(timm_student, TimmWrapperForImageClassification)
    assert timm_student(pixel_values=torch.randn(2, 3, 32, 32)).logits.shape == (2, 3)

    # A timm `save_for_hf` folder (its model arguments hold num_classes) gets a new head for the task's labels.
    pretrained = load_student(str(teacher_dirs["timm_vit"]), modality="image", label_names=labels)
    assert pretrained(pixel_values=torch.randn(1, 3, 32, 32)).logits.shape == (1, 3)
    vit.save_pretrained(tmp_path / "vit")
    reloaded = load_student(str(tmp_path / "vit"), modality="image", label_names=["x", "y"])
    assert reloaded.config.id2label == {0: "x", 1: "y"}
    with pytest.raises(ValueError, match="timm image model"):
        load_student("resnet10t", modality="text", label_names=labels)


def test_a_student_processor_that_cannot_be_loaded_names_the_fix(teacher_dirs, tmp_path, monkeypatch):
    assert type(load_processor(str(teacher_dirs["minilm"]), "text")).__name__.endswith("Tokenizer")
    with pytest.raises(
        ValueError, match=r"image processor \(preprocessor_config.json\) of .*: pass --processor_name_or"
    ):
        load_processor(str(tmp_path), "image")
    with pytest.raises(ValueError, match=r"(?s)tokenizer of 'org/student' .*the Hub is offline \(HF_HUB_OFFLINE=1\)"):
        load_processor("org/student", "text")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(ValueError, match="pass --processor_name_or_path"):
        load_processor(str(tmp_path / "missing"), "text")


# ---- Commands end to end ----------------------------------------------------------------------------------------


def test_precompute_saves_features_coordinates_and_a_coordinate_system_that_distill_reuses(
    teacher_dirs, tmp_path, cifar10_sample
):
    features = tmp_path / "features"
    argv = [
        *("precompute", "--train_file", CIFAR10, "--validation_file", CIFAR10, "--max_train_samples", "32"),
        *("--max_eval_samples", "16", "--teacher_model_name_or_path", str(teacher_dirs["dino"])),
        *("--tcs_num_components", "8", "--output_dir", str(features), "--use_cpu", "--log_level", "warning"),
    ]
    assert main(argv) == 0
    splits = datasets.load_from_disk(features)
    assert {name: len(split) for name, split in splits.items()} == {"train": 32, "validation": 16}
    coordinate_system = CoordinateSystem.from_pretrained(features / "tcs")
    assert coordinate_system.num_components == 8 and coordinate_system.feature_dim == 32
    assert coordinate_system.num_examples == 32 and coordinate_system.metadata["teacher"] == str(teacher_dirs["dino"])
    for split in splits.values():
        columns = split.with_format("numpy")[:]
        assert {"image", "label", "teacher_features", "tcs_coordinates"} <= set(split.column_names)
        expected = coordinate_system.project(np.asarray(columns["teacher_features"]))
        np.testing.assert_allclose(np.asarray(columns["tcs_coordinates"]), expected, atol=1e-5)

    # Distil from the saved folder: no teacher argument (so no teacher pass), the saved coordinate system.
    student = tmp_path / "student"
    argv = [
        *("distill", "--dataset_name", str(features), "--student_model_name_or_path", "vit"),
        *("--student_config", json.dumps(VIT_STUDENT), *training_args(student)),
    ]
    assert main(argv) == 0
    reused = CoordinateSystem.from_pretrained(student / "tcs")
    np.testing.assert_array_equal(reused.components, coordinate_system.components)
    check_image_student(student, cifar10_sample[0]["image"])


def test_distill_an_image_student_built_from_a_config(teacher_dirs, tmp_path, cifar10_sample):
    # The whole file is the evaluation split (no sample drawn from it), so that the accuracy can be checked by hand.
    argv = [*image_job(teacher_dirs, tmp_path / "student"), "--max_eval_samples", str(len(cifar10_sample))]
    assert main(["distill", *argv]) == 0
    check_image_student(tmp_path / "student", cifar10_sample[0]["image"])
    assert CoordinateSystem.from_pretrained(tmp_path / "student" / "tcs").num_components == 8
    results = json.loads((tmp_path / "student" / "all_results.json").read_text())
    assert results["eval_accuracy"] == pytest.approx(saved_student_accuracy(tmp_path / "student", cifar10_sample))
    assert np.isfinite(results["train_loss"])


def saved_student_accuracy(output_dir: Path, images) -> float:
    """The accuracy of the saved student, with its saved image processor, on ``images`` (columns image, label)."""
    model = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    processor = AutoImageProcessor.from_pretrained(output_dir)
    pixels = processor(images=[image.convert("RGB") for image in images["image"]], return_tensors="pt")
    with torch.no_grad():
        predictions = model(**pixels).logits.argmax(-1)
    return (predictions == torch.tensor(images["label"])).double().mean().item()


def test_build_trainer_runs_the_teacher_pass_first_and_leaves_the_config_alone(teacher_dirs, tmp_path):
    config = TCSConfig(
        output_dir=str(tmp_path),
        teacher_model_name_or_path=str(teacher_dirs["dino"]),
        tcs_num_components=8,
        use_cpu=True,
        report_to="none",
    )
    task = prepare_task(DataArguments(train_file=CIFAR10, max_train_samples=32), config)
    trainer = build_trainer(task, StudentArguments("vit", student_config=dict(VIT_STUDENT)), config)
    # The images' pixel_values are made on the fly, so the trainer's copy keeps the image column; the caller's config
    # is not edited.
    assert config.remove_unused_columns and not trainer.args.remove_unused_columns
    example = trainer.train_dataset[0]
    assert example["pixel_values"].shape[0] == 3 and len(example["tcs_coordinates"]) == 8
    assert trainer.coordinate_system.num_components == 8 and trainer.coordinate_system.metadata["teacher"]
    assert trainer.model_card.fields["teacher_pass_seconds"] > 0  # the card reports the pass the job ran


def test_distill_reads_an_image_folder(teacher_dirs, tmp_path, cifar10_sample):
    names = cifar10_sample.features["label"].names
    for i, example in enumerate(cifar10_sample.select(range(24))):
        folder = tmp_path / "images" / "train" / names[example["label"]]
        folder.mkdir(parents=True, exist_ok=True)
        example["image"].save(folder / f"{i}.png")
    argv = [
        *("distill", "--dataset_name", str(tmp_path / "images"), "--teacher_model_name_or_path"),
        *(str(teacher_dirs["dino"]), "--student_model_name_or_path", "resnet10t", *training_args(tmp_path / "out", 1)),
    ]
    assert main(argv) == 0
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out")
    found = sorted({names[label] for label in cifar10_sample.select(range(24))["label"]})
    assert [model.config.id2label[i] for i in range(len(found))] == found  # class names from the folder names


def test_distill_a_text_student_with_arguments_from_a_config_file(teacher_dirs, tmp_path, banking77_sample):
    argv = text_job(teacher_dirs, tmp_path / "student")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"max_steps": 5, "learning_rate": 1e-3, "tcs_loss_weight": 2.0}))
    assert main(["distill", "--config", str(config), *argv]) == 0  # argv's --max_steps 2 wins

    state = json.loads((tmp_path / "student" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "student")
    with torch.no_grad():
        logits = model(**tokenizer(["I lost my card, what do I do?"], return_tensors="pt")).logits
    intents = sorted(set(banking77_sample["category"]))
    assert logits.shape == (1, 77) and [model.config.id2label[i] for i in range(77)] == intents


def test_distill_with_an_unlabelled_pool_file(teacher_dirs, tmp_path, banking77_sample, capsys):
    pool = tmp_path / "pool.csv"
    banking77_sample.select(range(100, 148)).remove_columns("category").to_csv(pool)
    argv = text_job(teacher_dirs, tmp_path / "student")
    assert main(["distill", *argv, "--unlabeled_file", str(pool), "--tcs_unlabeled_ratio", "0.5"]) == 0
    state = json.loads((tmp_path / "student" / "trainer_state.json").read_text())
    assert all("tcs_unlabeled_loss" in entry for entry in state["log_history"] if "ce_loss" in entry)
    coordinate_system = CoordinateSystem.from_pretrained(tmp_path / "student" / "tcs")
    assert coordinate_system.num_examples == 64 + 48, "fitted on the labelled and the pool's features"

    # A pool with labels, or without the training set's input column, is a one-line error naming the fix.
    labelled = tmp_path / "labelled.csv"
    banking77_sample.select(range(8)).rename_column("category", "label").to_csv(labelled)
    no_text = tmp_path / "no_text.csv"
    banking77_sample.select(range(8)).rename_column("text", "query").remove_columns("category").to_csv(no_text)
    for path, message in ((labelled, "unlabeled_dataset has labels"), (no_text, "has no 'text' column")):
        assert exit_code(["distill", *argv, "--unlabeled_file", str(path)]) == 2
        assert message in capsys.readouterr().err


def test_distill_an_image_student_with_an_unlabelled_pool_dataset(teacher_dirs, tmp_path, cifar10_sample):
    cifar10_sample.select(range(200, 232)).remove_columns("label").save_to_disk(tmp_path / "pool")
    argv = [*image_job(teacher_dirs, tmp_path / "student"), "--unlabeled_dataset_name", str(tmp_path / "pool")]
    assert main(["distill", *argv]) == 0
    state = json.loads((tmp_path / "student" / "trainer_state.json").read_text())
    assert any("tcs_unlabeled_loss" in entry for entry in state["log_history"])
    assert CoordinateSystem.from_pretrained(tmp_path / "student" / "tcs").num_examples == 64
    check_image_student(tmp_path / "student", cifar10_sample[0]["image"])


def launch_distill(config: str, argv: list[str], tmp_path: Path, timeout: float = 240) -> tuple[int, str]:
    """`hf-tcs distill ARGV` in two processes: `accelerate launch --config_file examples/accelerate_configs/CONFIG`."""
    with socket.socket() as probe:  # a free port for this run's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    launch = [
        *(
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ACCELERATE_CONFIGS / f"{config}.yaml"),
        ),
        *("--num_processes", "2", "--main_process_port", port),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "datasets_cache"),
        "OMP_NUM_THREADS": "1",
    }
    process = subprocess.Popen(
        [*launch, "-m", "hf_tcs.cli", "distill", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that a hung run is killed with the processes the launcher started
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hf-tcs distill was still running in two processes after {timeout} s:\n{kill_launch(process)}")
    return process.returncode, output


@pytest.mark.distributed
def test_distill_runs_in_two_processes_with_the_cpu_accelerate_config(teacher_dirs, tmp_path, cifar10_sample):
    argv = [*image_job(teacher_dirs, tmp_path / "student"), "--ddp_find_unused_parameters", "false"]
    returncode, output = launch_distill("cpu", [*argv, "--log_level", "info"], tmp_path)
    assert returncode == 0, output[-5000:]
    assert "Total train batch size (w. parallel, distributed & accumulation) = 16" in output
    check_image_student(tmp_path / "student", cifar10_sample[0]["image"])


@pytest.mark.distributed
def test_two_processes_that_would_each_train_alone_are_refused(teacher_dirs, tmp_path):
    # The GPU config on a machine without GPUs and without --use_cpu: a process group, but one-process training
    # arguments, so each process would train on all the data into the same folder.
    argv = [arg for arg in image_job(teacher_dirs, tmp_path / "student") if arg != "--use_cpu"]
    returncode, output = launch_distill("multi_gpu", argv, tmp_path, timeout=120)
    assert returncode != 0, output[-5000:]
    assert output.count("2 processes were launched, but the training arguments run each of them on its own") == 2
    assert "pass `--use_cpu`" in output and "accelerate_configs/cpu.yaml" in output
    assert not (tmp_path / "student").exists()


def test_features_and_students_are_published_to_the_hub(teacher_dirs, tmp_path, cifar10_sample, local_hub):
    argv = [
        *("precompute", "--train_file", CIFAR10, "--max_train_samples", "32", "--tcs_num_components", "8"),
        *("--teacher_model_name_or_path", str(teacher_dirs["dino"]), "--output_dir", str(tmp_path / "features")),
        *("--use_cpu", "--log_level", "warning", "--push_to_hub", "--hub_dataset_id", "user/cifar10-dino"),
    ]
    assert main(argv) == 0
    assert "tcs/coordinate_system.json" in local_hub.files("user/cifar10-dino", repo_type="dataset")

    # Distil from the Hub dataset (its coordinate system comes from the repo's tcs/) and push with the Trainer.
    student = tmp_path / "student"
    argv = [
        *("distill", "--dataset_name", "user/cifar10-dino", "--student_model_name_or_path", "vit"),
        *("--student_config", json.dumps(VIT_STUDENT), *training_args(student, max_steps=1)),
        *("--push_to_hub", "--hub_model_id", "user/vit-tcs"),
    ]
    assert main(argv) == 0
    published = CoordinateSystem.from_pretrained("user/cifar10-dino", subfolder="tcs", repo_type="dataset")
    np.testing.assert_array_equal(CoordinateSystem.from_pretrained(student / "tcs").components, published.components)
    assert {"config.json", "model.safetensors", "tcs/coordinate_system.json"} <= set(local_hub.files("user/vit-tcs"))

    # `hf-tcs push` publishes the same folder to another repo.
    assert main(["push", str(student), "--hub_model_id", "user/vit-tcs-copy", "--commit_message", "Copy"]) == 0
    assert set(local_hub.files("user/vit-tcs-copy")) == set(local_hub.files("user/vit-tcs"))
    assert "Copy" in [commit.title for commit in local_hub.commits("user/vit-tcs-copy")]
    check_image_student("user/vit-tcs-copy", cifar10_sample[0]["image"])
