"""Shared fixtures: offline settings, real data samples and tiny randomly initialised teachers saved to folders.

Every teacher family hf_tcs supports is built here from a config (no download), saved the way users find it on
the Hub (weights + config + processor / tokenizer), and loaded back through `load_teacher` by the tests.
"""

import json
from pathlib import Path

import datasets
import pytest
import torch
from tiny_models import IMAGE_SIZE, tiny_vit_kwargs

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _offline_and_isolated(tmp_path_factory, monkeypatch):
    """No Hub access and a private datasets cache per test session: tests must not depend on each other's cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cache = tmp_path_factory.getbasetemp() / "hf_datasets_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))


@pytest.fixture(scope="session")
def cifar10_sample() -> datasets.Dataset:
    """300 real CIFAR-10 training images (30 per class), JPEG-backed `image` column and `label`."""
    return datasets.load_dataset("parquet", data_files=str(DATA_DIR / "cifar10_sample.parquet"), split="train")


@pytest.fixture(scope="session")
def banking77_sample() -> datasets.Dataset:
    """616 real Banking77 training texts (8 per intent), columns `text` and `category`."""
    return datasets.load_dataset("csv", data_files=str(DATA_DIR / "banking77_sample.csv"), split="train")


@pytest.fixture(scope="session")
def image_features(teacher_dirs, cifar10_sample) -> datasets.Dataset:
    """64 CIFAR-10 images with DINO-teacher features and the student's pixel_values (clean view)."""
    from transformers import ViTImageProcessor

    from hf_tcs import load_teacher, precompute_teacher_features

    teacher = load_teacher(teacher_dirs["dino"])
    dataset = precompute_teacher_features(cifar10_sample.select(range(64)), teacher)
    processor = ViTImageProcessor(size={"height": 32, "width": 32})

    def to_pixels(batch):
        return {"pixel_values": processor(images=batch["image"], return_tensors="np")["pixel_values"]}

    return dataset.map(to_pixels, batched=True, remove_columns=["image"])


def _save_image_processor(folder: Path, crop: bool = False):
    from transformers import BitImageProcessor, ViTImageProcessor

    if crop:  # DINOv2-style: resize the short side, then centre-crop
        processor = BitImageProcessor(
            size={"shortest_edge": IMAGE_SIZE + 4},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            do_center_crop=True,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
    else:
        processor = ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor.save_pretrained(folder)


@pytest.fixture(scope="session")
def teacher_dirs(tmp_path_factory) -> dict[str, Path]:
    """Folders holding tiny random teachers of every supported family, keyed by family name."""
    import timm
    from timm.models import save_for_hf
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        Dinov2Config,
        Dinov2Model,
        ResNetConfig,
        ResNetModel,
        ViTConfig,
        ViTMAEConfig,
        ViTMAEModel,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("teachers")
    dirs = {name: root / name for name in ("dino", "dinov2", "mae", "resnet", "timm_vit", "timm_resnet", "minilm")}
    torch.manual_seed(0)

    ViTModel(ViTConfig(**tiny_vit_kwargs()), add_pooling_layer=False).save_pretrained(dirs["dino"])
    _save_image_processor(dirs["dino"])

    Dinov2Model(Dinov2Config(**tiny_vit_kwargs(patch_size=4))).save_pretrained(dirs["dinov2"])
    _save_image_processor(dirs["dinov2"], crop=True)

    mae_config = ViTMAEConfig(
        **tiny_vit_kwargs(),
        decoder_hidden_size=32,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
        mask_ratio=0.75,
    )
    ViTMAEModel(mae_config).save_pretrained(dirs["mae"])
    _save_image_processor(dirs["mae"])

    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(dirs["resnet"])
    _save_image_processor(dirs["resnet"])

    vit_args = dict(img_size=IMAGE_SIZE, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    timm_vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **vit_args)
    save_for_hf(timm_vit, dirs["timm_vit"], model_args=vit_args, safe_serialization=True)
    timm_resnet = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    save_for_hf(timm_resnet, dirs["timm_resnet"], safe_serialization=True)

    _save_sentence_encoder(dirs["minilm"], BertConfig, BertModel, BertTokenizerFast)
    return dirs


def _save_sentence_encoder(folder: Path, config_cls, model_cls, tokenizer_cls):
    """A BERT-like sentence-transformers folder: model, tokenizer, mean pooling and a Normalize module."""
    words = sorted(set((DATA_DIR / "banking77_sample.csv").read_text().lower().split()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words[:400]]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab))
    tokenizer_cls(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    config = config_cls(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model_cls(config).save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48, "do_lower_case": False}))


# --- Local Hugging Face Hub ------------------------------------------------------------------------------------------


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A fresh loopback Hub-compatible server (tests/hub_server.py) that this test's HF clients talk to.

    Undoes `_offline_and_isolated`'s offline mode for this test only, points huggingface_hub / datasets /
    transformers at the server, removes tokens, and gives the clients an empty HF_HOME (so nothing downloaded by
    another test is reused). `local_hub.env` holds the variables a subprocess needs to do the same.
    """
    from hub_server import LocalHub

    with LocalHub(home=tmp_path / "hf_home") as hub:
        hub.connect_clients(monkeypatch)
        yield hub
    assert not hub.server_errors, "the local hub crashed on a request:\n" + "\n".join(hub.server_errors)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "distributed: starts several processes with `accelerate launch` (deselect: -m 'not distributed')"
    )
