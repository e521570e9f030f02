"""Input that is not what the user thinks it is: the training data, the settings, the command line, the student.

Each case used to train (or fail) without a word; each now raises (or warns) naming the problem and the fix.
"""

import logging
import math
import shutil

import datasets
import pytest
import torch
import yaml
from helpers import make_args
from test_cli import BANKING77, CIFAR10, exit_code
from tiny_models import make_student, tiny_vit_kwargs
from transformers import ViTConfig, ViTForImageClassification, ViTModel

from hf_tcs import CoordinateSystem, TCSConfig, TCSDistillationTrainer, precompute_teacher_features
from hf_tcs.cli import command_parser
from hf_tcs.config import count_or_share
from hf_tcs.data import check_texts
from hf_tcs.hub import push_features_to_hub
from hf_tcs.student import attach_tcs_head, find_classifier

# ---- Training data ----------------------------------------------------------------------------------------------


def trainer(tmp_path, dataset, model=None, **overrides):
    return TCSDistillationTrainer(
        model=model or make_student(), args=make_args(tmp_path, **overrides), train_dataset=dataset
    )


def test_a_training_set_without_labels_is_refused_and_points_to_the_unlabelled_pool(tmp_path, image_features):
    with pytest.raises(ValueError, match=r"no 'label' \(or 'labels'\) column.*unlabeled_dataset="):
        trainer(tmp_path, image_features.remove_columns("label"))
    # Labels all marked -100 are an unlabelled pool passed as the training set: refused the same way.
    unlabelled = image_features.map(lambda example: {"label": -100})
    with pytest.raises(ValueError, match=r"Every example of train_dataset is unlabelled.*`unlabeled_dataset=`"):
        trainer(tmp_path, unlabelled)


def test_a_teacher_parameter_takes_a_loaded_teacher_and_says_how_to_get_one(tmp_path, image_features, teacher_dirs):
    name = str(teacher_dirs["dino"])
    with pytest.raises(TypeError, match=r"teacher= takes a loaded Teacher, got str.*load_teacher\(name\)"):
        TCSDistillationTrainer(
            model=make_student(), args=make_args(tmp_path), train_dataset=image_features, teacher=name
        )
    with pytest.raises(TypeError, match=r"takes a loaded Teacher, got str.*load_teacher\(name_or_path\)"):
        precompute_teacher_features(image_features.remove_columns("teacher_features"), name)
    with pytest.raises(TypeError, match=r"teacher= takes the Teacher .* got dict"):
        push_features_to_hub(image_features, "user/features", teacher={"teacher": name})


def test_fractional_and_non_numeric_labels_are_refused(tmp_path, image_features):
    fractional = image_features.cast_column("label", datasets.Value("float32"))
    fractional = fractional.map(lambda example, i: {"label": 1.5 if i == 3 else example["label"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"fractional labels \[1.5\]"):
        trainer(tmp_path, fractional)
    named = image_features.cast_column("label", datasets.Value("string"))
    with pytest.raises(ValueError, match="not class indices.*class_encode_column"):
        trainer(tmp_path, named)
    # Whole numbers stored as floats are class indices.
    whole = image_features.cast_column("label", datasets.Value("float32"))
    assert trainer(tmp_path, whole).train_dataset is not None


def test_a_student_with_more_labels_than_the_data_has_classes_is_warned_about(tmp_path, image_features, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        trainer(tmp_path, image_features)
    assert "labels but the training data has" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        trainer(tmp_path, image_features, model=make_student(num_labels=12))
    assert "The student has 12 labels but the training data has 10 classes" in caplog.text


def test_a_coordinate_column_of_another_coordinate_system_of_the_same_k_is_refused(tmp_path, image_features):
    fitted = CoordinateSystem.fit(image_features, num_components=8)
    other = CoordinateSystem.fit(image_features.select(range(32)), num_components=8)
    with_coordinates = fitted.add_coordinates(image_features).select(range(48)).shuffle(seed=0)
    with pytest.raises(ValueError, match="made by another coordinate system"):
        TCSDistillationTrainer(
            model=make_student(), args=make_args(tmp_path), train_dataset=with_coordinates, coordinate_system=other
        )
    # The one that made it is accepted, also after a save and load.
    fitted.save_pretrained(tmp_path / "tcs")
    reloaded = CoordinateSystem.from_pretrained(tmp_path / "tcs")
    accepted = TCSDistillationTrainer(
        model=make_student(), args=make_args(tmp_path), train_dataset=with_coordinates, coordinate_system=reloaded
    )
    assert accepted.coordinate_system is reloaded


def test_tailoring_that_cannot_drop_anything_says_so(tmp_path, image_features, caplog):
    settings = dict(tcs_selection_strategy="steps", tcs_selection_steps=2)
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):  # a share of the variance: k is only known at fit time
        built = trainer(tmp_path, image_features, tcs_num_components=0.5, tcs_min_components=64, **settings)
    k = built.tcs_head.num_coordinates
    assert k < 64 and f"cannot drop anything: the coordinate system keeps {k} coordinates" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        trainer(tmp_path, image_features, tcs_num_components=16, tcs_min_components=4, **settings)
    assert "cannot drop anything" not in caplog.text


# ---- One meaning per setting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected", [(1, 1), (64, 64), ("1", 1), ("64", 64), (64.0, 64), (0.5, 0.5), ("0.95", 0.95), (None, None)]
)
def test_num_components_reads_an_int_as_a_count_and_a_float_below_1_as_a_share(value, expected):
    result = count_or_share(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value", [1.0, "1.0", 0, -3, 2.5, math.nan, math.inf, "many", True])
def test_num_components_refuses_ambiguous_and_impossible_values(value):
    with pytest.raises(ValueError, match="tcs_num_components"):
        TCSConfig(output_dir="out", use_cpu=True, tcs_num_components=value)


def test_num_components_1_means_one_coordinate_on_the_command_line_and_in_yaml(tmp_path):
    common = ["--student_model_name_or_path", "vit", "--output_dir", str(tmp_path), "--use_cpu"]
    (_, _, config, _), _ = command_parser("distill").parse_args_and_config(["--tcs_num_components", "1", *common])
    assert config.tcs_num_components == 1 and isinstance(config.tcs_num_components, int)
    path = tmp_path / "job.yaml"
    path.write_text("tcs_num_components: 1\n")
    (_, _, config, _), _ = command_parser("distill").parse_args_and_config(["--config", str(path), *common])
    assert config.tcs_num_components == 1 and isinstance(config.tcs_num_components, int)
    (_, _, config, _), _ = command_parser("distill").parse_args_and_config(["--tcs_num_components", "all", *common])
    assert config.tcs_num_components is None


def test_num_components_1_0_is_refused_on_both_routes(tmp_path, capsys):
    assert exit_code(["distill", "--tcs_num_components", "1.0", "--output_dir", str(tmp_path), "--use_cpu"]) == 2
    assert "1.0 is ambiguous" in capsys.readouterr().err
    path = tmp_path / "job.yaml"
    path.write_text(f"tcs_num_components: 1.0\noutput_dir: {tmp_path}\nuse_cpu: true\n")
    assert exit_code(["distill", "--config", str(path)]) == 2
    assert "tcs_num_components: 1.0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "setting, message",
    [
        (dict(tcs_loss_weight=math.nan), "tcs_loss_weight=nan: use a finite number"),
        (dict(tcs_lsh_weight=math.inf), "tcs_lsh_weight=inf: use a finite number"),
        (dict(tcs_selection_steps=math.nan, tcs_selection_strategy="steps"), "tcs_selection_steps=nan"),
        (
            dict(tcs_num_components=8, tcs_min_components=16, tcs_selection_strategy="epoch"),
            "tcs_min_components=16 is above tcs_num_components=8",
        ),
    ],
)
def test_impossible_settings_fail_when_the_config_is_built(setting, message):
    with pytest.raises(ValueError, match=message):
        TCSConfig(output_dir="out", use_cpu=True, **setting)
    # Without tailoring the floor means nothing: no error.
    TCSConfig(output_dir="out", use_cpu=True, tcs_num_components=8, tcs_min_components=16)


# ---- Command line -----------------------------------------------------------------------------------------------


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_a_missing_output_dir_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["precompute", "--train_file", CIFAR10, "--teacher_model_name_or_path", "x", "--use_cpu"]
    assert exit_code(argv) == 2
    assert "--output_dir is required" in one_error_line(capsys)
    assert not (tmp_path / "trainer_output").exists()


def test_flags_are_never_abbreviated(tmp_path, capsys):
    argv = ["distill", "--max_train_sample", "5", "--output_dir", str(tmp_path), "--use_cpu"]
    assert exit_code(argv) == 2
    assert "unrecognized arguments: --max_train_sample 5" in one_error_line(capsys)


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rate: fast\n", "learning_rate: 'fast' is not a number"),
        ("max_steps: 2.5\n", "max_steps: 2.5 is not an integer"),
        ("max_steps: [1, 2]\n", "max_steps: [1, 2] is not an integer"),
        ("bf16: maybe\n", "bf16: 'maybe' is not valid"),
        ("eval_strategy: often\n", "eval_strategy: 'often' is not valid (use one of ['no', 'steps', 'epoch'])"),
        ("learning_rate: [0.1\n", "is not valid YAML at line 4"),
    ],
)
def test_a_bad_yaml_value_or_syntax_names_the_file_and_the_key(text, message, tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path), "use_cpu": True}) + text)
    assert exit_code(["distill", "--config", str(path)]) == 2
    line = one_error_line(capsys)
    assert f"--config {path}" in line and message in line


def test_a_missing_text_in_the_evaluation_split_names_the_row(tmp_path, capsys):
    validation = tmp_path / "validation.csv"
    validation.write_text("text,category\nhello there,card_arrival\n,card_arrival\nagain,card_arrival\n")
    argv = [
        *("distill", "--train_file", BANKING77, "--validation_file", str(validation), "--label_column", "category"),
        *("--student_model_name_or_path", "bert", "--output_dir", str(tmp_path / "out"), "--use_cpu"),
    ]
    assert exit_code(argv) == 2
    assert "Row 1 of the 'validation' split has no text in column 'text'" in one_error_line(capsys)
    with pytest.raises(ValueError, match="Row 2 of the 'test' split has an empty text"):
        check_texts(datasets.Dataset.from_dict({"text": ["a", "b", "  "]}), "text", "test")


def test_a_truncated_or_missing_teacher_is_a_one_line_error_naming_the_file(teacher_dirs, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dirs["dino"], teacher)
    weights = teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    argv = ["precompute", "--train_file", CIFAR10, "--output_dir", str(tmp_path / "out"), "--use_cpu"]
    assert exit_code([*argv, "--teacher_model_name_or_path", str(teacher)]) == 2
    assert f"The teacher's weights {weights} could not be read" in one_error_line(capsys)
    missing = tmp_path / "no" / "teacher"
    assert exit_code([*argv, "--teacher_model_name_or_path", str(missing)]) == 2
    line = one_error_line(capsys)
    assert f"The teacher folder {missing} does not exist" in line and "Hub" not in line.split("does not exist")[0]


# ---- Students without a classifier ------------------------------------------------------------------------------


def test_a_bare_encoder_is_refused_even_when_a_layer_has_the_right_width():
    # hidden_size == num_labels: the pooler's Linear(32, 32) has the shape of a 32-label classifier.
    encoder = ViTModel(ViTConfig(**tiny_vit_kwargs(num_hidden_layers=1), num_labels=32))
    pooler = encoder.pooler.dense
    with pytest.raises(ValueError, match=r"ViTModel.*ForImageClassification.*ForSequenceClassification"):
        attach_tcs_head(encoder, 8)
    assert encoder.pooler.dense is pooler


def test_a_custom_module_is_refused_by_the_trainer_naming_the_student_classes_that_work(tmp_path, image_features):
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(3 * 32 * 32, 10)

        def forward(self, pixel_values, labels=None):
            return self.body(pixel_values.flatten(1))

    with pytest.raises(ValueError, match=r"Custom has no `config.num_labels`.*ForImageClassification.*Timm"):
        trainer(tmp_path, image_features, model=Custom())
    # A classification model still works, and its classifier is the layer swapped.
    model = ViTForImageClassification(ViTConfig(**tiny_vit_kwargs(num_hidden_layers=1), num_labels=10))
    assert find_classifier(model)[2] is model.classifier
