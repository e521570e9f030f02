"""Tests for hf_tcs.student: attaching, training and folding the TCS head on tiny random HF classifiers (offline)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    ConvNextConfig,
    DistilBertConfig,
    GPT2Config,
    MobileNetV2Config,
    ResNetConfig,
    RobertaConfig,
    TimmWrapperConfig,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

from hf_tcs.losses import coordinate_loss, masked_cross_entropy
from hf_tcs.student import (
    TCSHead,
    attach_tcs_head,
    find_classifier,
    fold_tcs_head,
    folded_tcs_head,
    get_tcs_head,
    student_coordinates,
)

NUM_LABELS, K, BATCH = 5, 6, 4
TEXT = {"vocab_size": 100, "max_position_embeddings": 64, "num_labels": NUM_LABELS}
BERT_SIZES = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
TIMM_VIT = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}

# family -> (config, Auto class, dotted path of the classifier Linear)
FAMILIES = {
    "vit": (ViTConfig(**BERT_SIZES, image_size=32, patch_size=8, num_labels=NUM_LABELS), "image", "classifier"),
    "resnet": (
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=NUM_LABELS),
        "image",
        "classifier.1",
    ),
    "mobilenet_v2": (
        MobileNetV2Config(image_size=32, depth_multiplier=0.35, num_labels=NUM_LABELS),
        "image",
        "classifier",
    ),
    "convnext": (
        ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32, num_labels=NUM_LABELS),
        "image",
        "classifier",
    ),
    "bert": (BertConfig(**TEXT, **BERT_SIZES), "text", "classifier"),
    "distilbert": (DistilBertConfig(**TEXT, dim=32, n_layers=1, n_heads=2, hidden_dim=64), "text", "classifier"),
    "roberta": (RobertaConfig(**TEXT, **BERT_SIZES, pad_token_id=1), "text", "classifier.out_proj"),
    "gpt2": (
        GPT2Config(
            vocab_size=100, n_positions=64, n_embd=32, n_layer=1, n_head=2, num_labels=NUM_LABELS, pad_token_id=0
        ),
        "text",
        "score",
    ),
    "timm_resnet18": (
        TimmWrapperConfig(
            architecture="resnet18", num_labels=NUM_LABELS, model_args={"channels": (8, 16, 32, 64), "stem_width": 8}
        ),
        "image",
        "timm_model.fc",
    ),
    "timm_vit": (
        TimmWrapperConfig(architecture="vit_tiny_patch16_224", num_labels=NUM_LABELS, model_args=TIMM_VIT),
        "image",
        "timm_model.head",
    ),
    "timm_convnext": (
        TimmWrapperConfig(
            architecture="convnext_atto",
            num_labels=NUM_LABELS,
            model_args={"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)},
        ),
        "image",
        "timm_model.head.fc",
    ),
}
AUTO = {"image": AutoModelForImageClassification, "text": AutoModelForSequenceClassification}


def build(family: str, seed: int = 0) -> nn.Module:
    config, modality, _ = FAMILIES[family]
    torch.manual_seed(seed)
    return AUTO[modality].from_config(config)


def make_inputs(family: str, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if FAMILIES[family][1] == "image":
        return {"pixel_values": torch.randn(BATCH, 3, 32, 32, generator=generator)}
    # Token 0 is GPT-2's pad token: keep it out so every sequence is scored at its last position.
    input_ids = torch.randint(2, 100, (BATCH, 12), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def calibrate_batchnorm(model: nn.Module, family: str) -> None:
    """Estimate BatchNorm statistics on the inputs, as a trained model would have them.

    With the init statistics, eval-mode features of random BN networks vanish (MobileNetV2: ~1e-25), which would make
    the fold comparison vacuous.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(**make_inputs(family, seed=20 + seed))
    model.eval()


def train_steps(model: nn.Module, family: str, steps: int = 3) -> None:
    """A few Adam steps on the head (CE + coordinate MSE) so none of its weights is at its initial value.

    Adam, because its step size does not depend on the feature norm, which varies by orders of magnitude here. The
    model stays in eval mode so the calibrated BatchNorm statistics hold.
    """
    trainable = [p for name, p in get_tcs_head(model).named_parameters() if "tcs_gate" not in name]
    optimizer = torch.optim.Adam(trainable, lr=0.01)
    labels = torch.arange(BATCH) % NUM_LABELS
    target = torch.randn(BATCH, K, generator=torch.Generator().manual_seed(2))
    for step in range(steps):
        logits = model(**make_inputs(family, seed=10 + step)).logits
        loss = masked_cross_entropy(logits, labels) + coordinate_loss(last_token(student_coordinates(model)), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def last_token(coordinates: torch.Tensor) -> torch.Tensor:
    """GPT-2 scores every token (B, T, k); without padding its logits come from the last position."""
    return coordinates[:, -1] if coordinates.ndim == 3 else coordinates


@pytest.mark.parametrize("family", FAMILIES)
def test_find_classifier_locates_final_linear(family):
    model = build(family)
    parent, attr, linear = find_classifier(model)
    assert getattr(parent, attr) is linear
    assert model.get_submodule(FAMILIES[family][2]) is linear
    assert linear.out_features == NUM_LABELS


@pytest.mark.parametrize("family", FAMILIES)
def test_attach_forward_and_gate_gradient(family):
    model = build(family)
    head = attach_tcs_head(model, K)
    assert model.get_submodule(FAMILIES[family][2]) is head
    assert get_tcs_head(model) is head and isinstance(head, TCSHead)
    assert (head.num_coordinates, head.num_labels, head.num_active) == (K, NUM_LABELS, K)
    logits = model(**make_inputs(family)).logits
    assert logits.shape == (BATCH, NUM_LABELS)
    coordinates = student_coordinates(model)
    assert coordinates.shape[0] == BATCH and coordinates.shape[-1] == K
    if family != "gpt2":
        assert coordinates.shape == (BATCH, K)
    logits.logsumexp(-1).sum().backward()
    assert head.tcs_gate.grad is not None and head.tcs_gate.grad.shape == (K,)
    assert head.tcs_gate.grad.abs().sum() > 0


def test_attach_leaves_config_unchanged():
    model = build("vit")
    before = model.config.to_dict()
    attach_tcs_head(model, K)
    assert model.config.to_dict() == before


def test_mask_and_gate_are_saved_and_drop_is_permanent():
    model = build("vit")
    head = attach_tcs_head(model, K)
    head.drop([1, 3])
    head.drop(torch.tensor([False, False, False, False, False, True]))
    assert head.active.tolist() == [True, False, True, False, True, False]
    assert head.num_active == 3
    state = model.state_dict()
    assert state["classifier.mask"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert "classifier.tcs_gate" in dict(model.named_parameters())
    assert torch.equal(state["classifier.importance"], torch.zeros(K))
    with pytest.raises(IndexError, match=r"\[0, 6\)"):
        head.drop([K])


def test_dropped_coordinates_do_not_affect_logits():
    model = build("vit").eval()
    head = attach_tcs_head(model, K)
    head.drop([0, 2])
    inputs = make_inputs("vit")
    logits = model(**inputs).logits
    with torch.no_grad():
        head.projector.weight[[0, 2]] += 100.0
    torch.testing.assert_close(model(**inputs).logits, logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_fold_is_exact_and_round_trips(family, tmp_path):
    model = build(family)
    calibrate_batchnorm(model, family)
    head = attach_tcs_head(model, K)
    train_steps(model, family)
    head.drop([1, 4])
    inputs = make_inputs(family, seed=99)
    with torch.no_grad():
        unfolded = model(**inputs).logits
        assert fold_tcs_head(model) is model
        folded = model(**inputs).logits
    assert get_tcs_head(model) is None
    assert unfolded.abs().max() > 0.1  # features of a usable scale, so the comparison means something
    assert (folded - unfolded).abs().max() <= 1e-5

    pristine = build(family, seed=1)
    assert list(model.state_dict()) == list(pristine.state_dict())
    model.save_pretrained(tmp_path)
    reloaded, info = AUTO[FAMILIES[family][1]].from_pretrained(tmp_path, output_loading_info=True)
    assert type(reloaded) is type(pristine)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert list(reloaded.state_dict()) == list(pristine.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**inputs).logits, folded, rtol=0, atol=0)


def test_folded_context_saves_plain_model_and_restores_head(tmp_path):
    model = build("bert")
    head = attach_tcs_head(model, K)
    head.drop([2])
    model.eval()
    inputs = make_inputs("bert")
    with torch.no_grad():
        logits = model(**inputs).logits
    with folded_tcs_head(model) as plain:
        assert plain is model and get_tcs_head(model) is None
        model.save_pretrained(tmp_path)
    assert get_tcs_head(model) is head and model.classifier is head
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert (reloaded(**inputs).logits - logits).abs().max() <= 1e-5
    with pytest.raises(RuntimeError, match="boom"), folded_tcs_head(model):
        raise RuntimeError("boom")
    assert model.classifier is head


def test_fold_keeps_bias_free_classifier_bias_free():
    model = build("gpt2")
    attach_tcs_head(model, K)
    assert get_tcs_head(model).projector.bias is None
    assert fold_tcs_head(model).score.bias is None


def test_wrapped_model_is_unwrapped():
    class Wrapper(nn.Module):  # stands in for DDP / accelerate, which expose the model as `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, **inputs):
            return self.module(**inputs)

    wrapped = Wrapper(build("bert"))
    head = attach_tcs_head(wrapped, K)
    wrapped(**make_inputs("bert"))
    assert get_tcs_head(wrapped) is head
    assert student_coordinates(wrapped).shape == (BATCH, K)
    assert fold_tcs_head(wrapped) is wrapped.module


def test_model_without_classifier_raises():
    with pytest.raises(ValueError, match=r"ViTModel.*num_labels=5.*classifier.*AutoModelFor"):
        find_classifier(ViTModel(FAMILIES["vit"][0]))
    identity_head = ViTForImageClassification(ViTConfig(**BERT_SIZES, image_size=32, patch_size=8, num_labels=0))
    with pytest.raises(ValueError, match="ViTForImageClassification"):
        attach_tcs_head(identity_head, K)


def test_attach_twice_fold_without_head_and_early_coordinates_raise():
    model = build("vit")
    with pytest.raises(ValueError, match="no TCS head"):
        fold_tcs_head(model)
    with pytest.raises(ValueError, match="no TCS head"), folded_tcs_head(model):
        pass
    with pytest.raises(ValueError, match="attach_tcs_head"):
        student_coordinates(model)
    attach_tcs_head(model, K)
    with pytest.raises(ValueError, match="already has a TCS head"):
        attach_tcs_head(model, K)
    with pytest.raises(RuntimeError, match="has not run"):
        student_coordinates(model)


def test_head_rejects_zero_coordinates():
    with pytest.raises(ValueError, match="num_coordinates"):
        TCSHead(8, 0, NUM_LABELS)


def test_fold_uses_gate_and_mask():
    torch.manual_seed(0)
    head = TCSHead(8, K, NUM_LABELS, dtype=torch.float64)
    with torch.no_grad():
        head.tcs_gate.uniform_(0.5, 1.5)
    head.drop([0, 5])
    hidden = torch.randn(7, 8, dtype=torch.float64)
    folded = head.fold()
    assert isinstance(folded, nn.Linear) and folded.weight.dtype == torch.float64
    torch.testing.assert_close(folded(hidden), head(hidden), rtol=0, atol=1e-12)


def test_head_accepts_extra_leading_dims():
    head = TCSHead(8, K, NUM_LABELS)
    assert head(torch.randn(2, 3, 8)).shape == (2, 3, NUM_LABELS)
    assert head.last_coordinates.shape == (2, 3, K)
