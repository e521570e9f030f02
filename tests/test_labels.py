"""Class names: a student trained by any route predicts the task's names, not `LABEL_11` (hf_tcs.labels)."""

import logging

import datasets
from helpers import make_args
from tiny_models import NUM_LABELS, make_student, tiny_vit_kwargs
from transformers import AutoConfig

from hf_tcs import TCSDistillationTrainer
from hf_tcs.labels import class_label_names, label_config, name_labels
from hf_tcs.models import load_student

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_a_student_without_names_takes_the_training_sets_class_labels(tmp_path, image_features):
    assert class_label_names(image_features) == CIFAR10_NAMES
    student = make_student()
    assert student.config.id2label[3] == "LABEL_3"  # what a config built with num_labels=10 has
    trainer = TCSDistillationTrainer(model=student, args=make_args(tmp_path), train_dataset=image_features)
    assert trainer.model.config.id2label == dict(enumerate(CIFAR10_NAMES))
    assert trainer.model.config.label2id["cat"] == 3
    trainer.save_model()
    saved = AutoConfig.from_pretrained(tmp_path / "out")
    assert saved.id2label[3] == "cat" and saved.label2id["truck"] == 9


def test_a_student_with_its_own_names_keeps_them_and_a_disagreement_warns(image_features, caplog):
    student = make_student()
    own = [f"class-{i}" for i in range(NUM_LABELS)]
    for key, value in label_config(own).items():
        setattr(student.config, key, value)
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        name_labels(student, image_features)
    assert student.config.id2label[0] == "class-0"
    assert (
        "differs from the training set's ClassLabel names (class 0: 'class-0' in the config, 'airplane'" in caplog.text
    )

    caplog.clear()
    for key, value in label_config(CIFAR10_NAMES).items():
        setattr(student.config, key, value)
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        name_labels(student, image_features)
    assert caplog.text == ""  # agreeing names: nothing to say


def test_a_dataset_without_class_labels_or_with_another_number_of_classes_leaves_the_names(image_features, caplog):
    student = make_student()
    name_labels(student, image_features.cast_column("label", datasets.Value("int64")))
    assert student.config.id2label[0] == "LABEL_0"
    five = make_student(num_labels=5)
    with caplog.at_level(logging.WARNING, logger="hf_tcs"):
        name_labels(five, image_features)
    assert five.config.id2label[0] == "LABEL_0" and "names 10 classes but the student has num_labels=5" in caplog.text


def test_the_cli_students_are_named_by_the_same_helper():
    student = load_student("vit", modality="image", label_names=CIFAR10_NAMES, config_overrides=tiny_vit_kwargs())
    expected = label_config(CIFAR10_NAMES)
    assert student.config.id2label == expected["id2label"] and student.config.label2id == expected["label2id"]
