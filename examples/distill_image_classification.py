"""Distil a self-supervised image encoder (DINO, DINOv2, MAE, any transformers or timm encoder) into a classifier.

The teacher runs once over the clean training images (its features are cached); the coordinate system is the PCA of
those features; the student trains on its own augmented views with cross-entropy + the coordinate loss, with no
teacher in memory. The student can be a Hub model or local folder (pretrained, new classifier), a transformers
architecture built from a config (`vit` + --student_config), or a timm architecture (`resnet18`, random init).
Any image classification dataset works: a Hub id, an image folder, a folder of parquet files, or data files.

Usage:
    python examples/distill_image_classification.py \\
        --dataset_name uoft-cs/cifar10 \\
        --teacher_model_name_or_path facebook/dinov2-small \\
        --student_model_name_or_path facebook/deit-tiny-patch16-224 \\
        --num_train_epochs 10 --per_device_train_batch_size 128 --learning_rate 5e-4 \\
        --output_dir deit-tiny-cifar10-tcs

    # an MAE teacher, a timm student from scratch, a local image folder (class names from the folder names)
    python examples/distill_image_classification.py --dataset_name path/to/images \\
        --teacher_model_name_or_path facebook/vit-mae-base --student_model_name_or_path resnet18 \\
        --output_dir resnet18-tcs

    # offline: a local copy of the data (parquet files) and of the teacher (a save_pretrained folder)
    python examples/distill_image_classification.py --dataset_name ../shared/data/cifar10 \\
        --teacher_model_name_or_path ./dinov2-small --student_model_name_or_path vit \\
        --student_config '{"hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 3}' \\
        --output_dir vit-tiny-tcs

    # all arguments from a YAML file, any of them overridden on the command line
    python examples/distill_image_classification.py --config examples/configs/cifar10_dino.yaml --learning_rate 1e-3

    # several GPUs (or DeepSpeed / FSDP: see examples/accelerate_configs/); the teacher pass is shared out too
    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml \\
        examples/distill_image_classification.py --dataset_name uoft-cs/cifar10 --output_dir deit-tiny-cifar10-tcs

    # two processes on CPUs (gloo): the CPU config, and --use_cpu
    accelerate launch --config_file examples/accelerate_configs/cpu.yaml \\
        examples/distill_image_classification.py --dataset_name uoft-cs/cifar10 --output_dir deit-tiny-cifar10-tcs \\
        --use_cpu

This script is `hf-tcs distill` with image defaults (DINOv2-small teacher, DeiT-tiny student, augmented student
views): every argument below can be changed.
"""

import sys

from hf_tcs.cli import command_parser, run
from hf_tcs.jobs import distill

DEFAULTS = {
    "teacher_model_name_or_path": "facebook/dinov2-small",
    "student_model_name_or_path": "facebook/deit-tiny-patch16-224",
    "augment": True,
}


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("distill", DEFAULTS, prog="distill_image_classification.py", description=__doc__)
    return run(distill, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
