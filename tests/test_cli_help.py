"""The first screen of `hf-tcs`: grouped help (short with -h, full with --help), only the arguments a command reads,
the model card's own flags, and quiet logging unless `--log_level` asks for more."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from test_cli import exit_code, text_job

from hf_tcs import TCSConfig
from hf_tcs.cli import COMMANDS, command_parser

SRC = Path(__file__).parent.parent / "src"


def help_text(capsys, *argv: str) -> str:
    assert exit_code(list(argv)) == 0
    return capsys.readouterr().out


def group_titles(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if re.fullmatch(r"[a-z][a-z ]*:", line)]


def test_distill_help_groups_the_arguments_with_hf_tcs_own_first(capsys):
    full = help_text(capsys, "distill", "--help")
    assert group_titles(full) == [
        "options",
        "data",
        "teacher",
        "coordinates and loss",
        "student",
        "publishing",
        "training",
    ]
    sections = dict(zip(group_titles(full), re.split(r"\n[a-z][a-z ]*:\n", full)[1:], strict=True))
    assert (
        "--teacher_model_name_or_path" in sections["teacher"]
        and "--tcs_loss_weight" in sections["coordinates and loss"]
    )
    assert "--student_model_name_or_path" in sections["student"] and "--license" in sections["publishing"]
    assert "--adam_beta1" in sections["training"] and "--tcs_" not in sections["training"]
    assert "--dataset-name" not in full  # each option once (the dashed spelling still parses)


def test_short_help_shows_hf_tcs_arguments_and_the_common_training_ones(capsys):
    full = help_text(capsys, "distill", "--help")
    short = help_text(capsys, "distill", "-h")
    assert len(short.splitlines()) < len(full.splitlines()) / 2
    for flag in ("--teacher_model_name_or_path", "--tcs_num_components", "--student_config", "--learning_rate"):
        assert flag in short
    assert "--adam_beta1" not in short and "--lr_scheduler_kwargs" not in short
    hidden = re.search(r"(\d+) more training arguments: see `hf-tcs distill --help`", short)
    assert hidden and int(hidden.group(1)) > 80


def test_precompute_lists_and_accepts_only_what_it_uses(capsys, tmp_path):
    text = help_text(capsys, "precompute", "--help")
    for flag in ("--teacher_model_name_or_path", "--tcs_num_components", "--output_dir", "--hub_dataset_id"):
        assert flag in text
    for flag in ("--learning_rate", "--optim", "--tcs_loss_weight", "--num_train_epochs", "--student_config"):
        assert flag not in text
    assert exit_code(["precompute", "--learning_rate", "1e-3", "--output_dir", str(tmp_path)]) == 2
    assert "unrecognized arguments: --learning_rate 1e-3" in capsys.readouterr().err
    assert set(COMMANDS["precompute"].config_fields) < set(TCSConfig.__dataclass_fields__)
    # The arguments it does not read keep their defaults: the config is the one TCSConfig itself would make.
    (_, _, config), _ = command_parser("precompute").parse_args_and_config(
        ["--output_dir", str(tmp_path), "--use_cpu"]
    )
    expected = TCSConfig(str(tmp_path), use_cpu=True)
    fields = [f.name for f in dataclasses.fields(TCSConfig) if f.init]
    assert [name for name in fields if getattr(config, name) != getattr(expected, name)] == []


def test_distill_writes_the_license_and_references_into_the_card(teacher_dirs, tmp_path):
    reference = {"teacher + linear probe": {"accuracy": 0.875}}
    argv = [*text_job(teacher_dirs, tmp_path / "student"), "--license", "apache-2.0"]
    assert exit_code(["distill", *argv, "--reference_metrics", json.dumps(reference)]) == 0
    card = ModelCard.load(tmp_path / "student" / "README.md")
    assert card.data.license == "apache-2.0"
    assert "| Metric | student | teacher + linear probe |" in card.text and "| 0.8750 |" in card.text


@pytest.mark.parametrize("references", ['{"probe": 0.9}', "{no-json"])
def test_a_bad_reference_is_a_one_line_error(references, tmp_path, capsys):
    argv = ["distill", "--student_model_name_or_path", "bert", "--output_dir", str(tmp_path)]
    assert exit_code([*argv, "--reference_metrics", references]) == 2
    [error] = capsys.readouterr().err.splitlines()
    assert error.startswith("hf-tcs distill: error: --reference_metrics")


def run_distill(teacher_dirs, output_dir: Path, *log_level: str) -> str:
    """`hf-tcs distill` in a fresh process (logging is process-wide), its stdout and stderr together."""
    argv = text_job(teacher_dirs, output_dir)
    at = argv.index("--log_level")
    argv[at : at + 2] = log_level
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["HF_DATASETS_CACHE"] = str(output_dir.with_name(f"{output_dir.name}_datasets_cache"))  # a fresh cache
    done = subprocess.run(
        [sys.executable, "-m", "hf_tcs.cli", "distill", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout + done.stderr


def test_default_logging_is_quiet_and_log_level_brings_the_detail_back(teacher_dirs, tmp_path):
    quiet = run_distill(teacher_dirs, tmp_path / "quiet")
    assert "Model config" not in quiet and "loading configuration file" not in quiet
    assert "datasets.builder" not in quiet and "Generating train split\n" not in quiet
    assert "hf_tcs.coordinates - Coordinate system: CoordinateSystem(" in quiet  # hf_tcs' own progress stays

    verbose = run_distill(teacher_dirs, tmp_path / "verbose", "--log_level", "info")
    assert verbose.count("Model config BertConfig") >= 1
    lines = [line for line in verbose.splitlines() if "Caching processed dataset" in line or "Generating" in line]
    assert lines
    # datasets logs each message once: through its own handler, not a second time through the root handler.
    assert not [line for line in verbose.splitlines() if " - INFO - datasets." in line]
