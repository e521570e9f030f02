"""The tiny ViT shape that the tests' teachers and students share (32 px images, patch 8, hidden 32), built from a
config: no download, a few milliseconds a step on CPU."""

from transformers import ViTConfig, ViTForImageClassification

IMAGE_SIZE = 32
NUM_LABELS = 10


def tiny_vit_kwargs(**overrides) -> dict:
    """Keyword arguments of a ViT-shaped config (`ViTConfig`, `Dinov2Config`, `ViTMAEConfig`...); ``overrides`` win."""
    return (
        dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=IMAGE_SIZE,
            patch_size=8,
        )
        | overrides
    )


def make_student(seed: int = 0, num_labels: int = NUM_LABELS) -> ViTForImageClassification:
    """A one-layer ViT classifier without dropout (so that runs compare exactly), initialised from ``seed``."""
    import torch

    torch.manual_seed(seed)
    config = ViTConfig(
        **tiny_vit_kwargs(num_hidden_layers=1),
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTForImageClassification(config)
