"""Load a frozen self-supervised teacher (transformers or timm) together with its own preprocessing.

A TCS teacher is never trained and never runs during student training: it is forwarded once over the training
set and only its pooled final embedding is kept. `load_teacher` therefore returns a small frozen `Teacher` that
knows how to turn raw inputs (PIL images or strings) into one float32 feature vector each, and that carries a
precise identity (name, revision, weights, pooling, preprocessing) so that cached features can be keyed on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HFValidationError, RemoteEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from .config import TCSConfig
from .distributed import fail_together
from .models import load_processor
from .names import ModelName, parse_model_name

__all__ = ["Teacher", "load_teacher"]

Backend = Literal["auto", "transformers", "timm"]

# Vision transformers whose CLS token (after the final norm) is the image embedding their authors evaluate.
_CLS_TOKEN_MODEL_TYPES = {"vit", "dinov2", "dinov2_with_registers", "dinov3_vit", "deit", "beit", "data2vec-vision"}
_TEXT_POOLINGS = ("mean", "cls", "max")
_VISION_POOLINGS = ("cls", "mean", "pooler")


@dataclass(eq=False)
class Teacher:
    """A frozen encoder and the preprocessing it was trained with.

    Build it with `load_teacher`. `encode(batch)` maps a list of raw inputs (PIL images or strings) to a float32
    array of shape `(len(batch), feature_dim)`; `fingerprint` is a stable hash of everything that determines
    those features, used to key the feature cache.
    """

    model: torch.nn.Module
    name_or_path: str
    backend: Literal["transformers", "timm"]
    modality: Literal["image", "text"]
    pooling: str
    feature_dim: int
    preprocessor: Any
    revision: str | None = None
    normalize: bool = False
    max_length: int | None = None
    weights_id: str | None = field(default=None, repr=False)
    hub_id: str | None = None

    def __post_init__(self):
        self.model.eval()
        self.model.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the encoder computes in (its features are float32 whatever it is)."""
        return next(self.model.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Teacher:
        """Move the encoder to `device` and/or cast it to `dtype` (the features stay float32 numpy arrays)."""
        self.model.to(device=device, dtype=dtype)
        return self

    @property
    def preprocessing_config(self) -> dict[str, Any]:
        """The preprocessing settings that shape the features (part of the fingerprint and of the provenance)."""
        if self.backend == "timm":
            return {"timm_data_config": _jsonable(self.preprocessor_config)}
        if self.modality == "text":
            return {
                "tokenizer": type(self.preprocessor).__name__,
                "vocab_size": len(self.preprocessor),
                "max_length": self.max_length,
                "do_lower_case": getattr(self.preprocessor, "do_lower_case", None),
            }
        return {"image_processor": _jsonable(self.preprocessor.to_dict())}

    @cached_property
    def preprocessor_config(self) -> dict[str, Any]:
        """timm's resolved data config (input size, interpolation, crop, mean/std); empty for other backends."""
        if self.backend != "timm":
            return {}
        import timm.data

        return timm.data.resolve_model_data_config(self.model)

    @cached_property
    def _timm_transform(self):
        import timm.data

        return timm.data.create_transform(**self.preprocessor_config, is_training=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able identity of the teacher, recorded as provenance next to features and coordinate systems.

        `teacher` is the Hub id when one is known (`load_teacher(folder, hub_id=...)` for a local copy; the folder is
        then `teacher_path`), else the name or path the teacher was loaded from.
        """
        local_copy = {"teacher_path": self.name_or_path} if self.hub_id and self.hub_id != self.name_or_path else {}
        return {
            **local_copy,
            "teacher": self.hub_id or self.name_or_path,
            "teacher_revision": self.revision,
            "teacher_backend": self.backend,
            "teacher_class": type(self.model).__name__,
            "modality": self.modality,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "feature_dim": self.feature_dim,
        }

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the teacher identity: name, revision, weights, pooling and preprocessing."""
        identity = {**self.to_dict(), "weights": self.weights_id, "preprocessing": self.preprocessing_config}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def preprocess(self, batch: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Turn raw inputs into the model's tensors with the teacher's own, augmentation-free preprocessing."""
        if self.modality == "text":
            return self.preprocessor(
                list(batch), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        images = [image.convert("RGB") for image in batch]
        if self.backend == "timm":
            return {"pixel_values": torch.stack([self._timm_transform(image) for image in images])}
        return {"pixel_values": self.preprocessor(images=images, return_tensors="pt")["pixel_values"]}

    @torch.inference_mode()
    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """Features of a batch of raw inputs, float32 `(B, feature_dim)`."""
        device, dtype = self.device, self.dtype
        # One asynchronous copy per input tensor from pinned memory: the copies queue up behind each other and
        # the forward, and the only synchronisation is reading the features back.
        pin = device.type == "cuda"
        inputs = {
            k: (v.pin_memory() if pin else v).to(
                device, dtype=dtype if v.is_floating_point() else None, non_blocking=pin
            )
            for k, v in self.preprocess(batch).items()
        }
        features = self._forward(inputs).float()
        if self.normalize:
            features = torch.nn.functional.normalize(features, dim=-1)
        return features.cpu().numpy()

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.backend == "timm":
            return self.model.forward_head(self.model.forward_features(inputs["pixel_values"]), pre_logits=True)
        if self.model.config.model_type == "vit_mae":
            # ViT-MAE shuffles tokens with random noise even at mask_ratio=0; an ordered noise keeps it deterministic.
            num_patches = self.model.embeddings.patch_embeddings.num_patches
            batch_size = inputs["pixel_values"].shape[0]
            inputs["noise"] = torch.arange(num_patches, device=self.device).float().expand(batch_size, -1)
        outputs = self.model(**inputs)
        if self.pooling == "pooler":
            if getattr(outputs, "pooler_output", None) is None:
                raise ValueError(
                    f"Teacher {self.name_or_path!r} ({type(self.model).__name__}) returns no pooler_output: "
                    "load it with pooling='cls' or pooling='mean'."
                )
            return outputs.pooler_output.flatten(1)
        # Pool in float32: a half-precision mean over hundreds of tokens loses digits the features need.
        hidden = outputs.last_hidden_state.float()
        if self.modality == "text":
            return _pool_tokens(hidden, inputs["attention_mask"], self.pooling)
        if self.pooling == "cls":
            return hidden[:, 0]
        # Mean over patch tokens only: the CLS (and any register) tokens are not image regions.
        num_prefix = 1 + getattr(self.model.config, "num_register_tokens", 0)
        return hidden[:, num_prefix:].mean(dim=1)


def _pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence-transformers' pooling of token embeddings, ignoring padding."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def load_teacher(
    name_or_path: str | os.PathLike | torch.nn.Module,
    *,
    revision: str | None = None,
    backend: Backend = "auto",
    pooling: str = "auto",
    processor: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    hub_id: str | None = None,
    **model_kwargs,
) -> Teacher:
    """Load a frozen teacher from the Hub, a local folder, or an already loaded transformers / timm model.

    Args:
        name_or_path: a Hub id (`facebook/dinov2-small`, `timm/vit_small_patch16_224.dino`,
            `hf-hub:<repo>`), a local folder (a transformers or sentence-transformers folder, or one written by
            timm's `save_for_hf`), or a model object.
        revision: the Hub revision (branch, tag or commit) to pin.
        backend: `"transformers"`, `"timm"` or `"auto"` (decided from the id and the folder's `config.json`).
        pooling: how the feature vector is read from the encoder. `"auto"`: the CLS token after the final norm
            for DINO/DINOv2-style ViTs, the mean of patch tokens for ViT-MAE, `pooler_output` for other vision
            encoders (ResNet, ConvNeXt), the sentence-transformers setting (default: masked mean) for text, and
            `forward_head(pre_logits=True)` for timm. Explicit: `"cls"`, `"mean"`, `"pooler"` (vision),
            `"mean"`, `"cls"`, `"max"` (text).
        processor: the image processor or tokenizer to use instead of the one stored with the model (needed
            for a model object that does not come from a folder holding its processor).
        device: where to run the teacher; defaults to CUDA when available.
        dtype: the dtype the teacher computes in (`torch.bfloat16` or `"bfloat16"` halves its memory and, on GPUs,
            its time); the checkpoint's weights as loaded (usually float32) when `None`. The features are float32
            whatever it is, and cached apart from those of other dtypes.
        trust_remote_code: passed to transformers; stays off unless asked for.
        hub_id: the Hub id (`namespace/name`) of which a local folder is a copy, e.g. `facebook/dinov2-small` for a
            folder downloaded with `hf download facebook/dinov2-small --local-dir ./dinov2`. The features, coordinate
            systems and model cards made from this teacher then name it by that id (with `revision`, when given),
            instead of by the folder, whose path means nothing elsewhere.
        **model_kwargs: passed to `from_pretrained` / `timm.create_model`.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if hub_id is not None:
        try:
            validate_repo_id(hub_id)
        except HFValidationError as error:
            raise ValueError(
                f"hub_id={hub_id!r} is not a Hub repo id ({error}): pass the id the folder was downloaded from, "
                "e.g. 'facebook/dinov2-small'."
            ) from None
    if isinstance(name_or_path, torch.nn.Module):
        teacher = _teacher_from_module(name_or_path, pooling=pooling, processor=processor)
    else:
        name = parse_model_name(name_or_path)
        _check_folder_exists(name)
        if backend == "auto":
            backend = _detect_backend(name, revision)
        if backend == "timm":
            teacher = _load_timm(name, revision=revision, pooling=pooling, **model_kwargs)
        elif backend == "transformers":
            teacher = _load_transformers(
                name,
                revision=revision,
                pooling=pooling,
                processor=processor,
                trust_remote_code=trust_remote_code,
                **model_kwargs,
            )
        else:
            raise ValueError(f"Unknown backend {backend!r}: use 'auto', 'transformers' or 'timm'.")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype: use e.g. 'float32', 'bfloat16' or 'float16'.")
        dtype = getattr(torch, dtype)
    teacher.hub_id = hub_id
    return teacher.to(device, dtype)


def _check_folder_exists(name: ModelName) -> None:
    """A teacher named by a path that is no folder (`./teacher`, `/data/dino`, `local-dir:...`) does not exist:
    say so, instead of trying it as a Hub repo id."""
    if name.kind == "path":
        path = name.path
        what = "a file, not a folder" if os.path.exists(path) else "does not exist"
        raise FileNotFoundError(
            f"The teacher folder {path} {what}: pass the folder that holds the teacher's config.json and weights, "
            "or a Hub id (namespace/name)."
        )


@contextmanager
def _readable_weights(name: ModelName) -> Iterator[None]:
    """Name the weight file of a local teacher that cannot be read (a cut-short download or copy), not a bare
    safetensors error."""
    try:
        yield
    except Exception as error:
        if name.kind != "folder" or "safetensors" not in type(error).__module__:
            raise
        files = sorted(str(path) for path in Path(name.path).glob("*.safetensors"))
        raise OSError(
            f"The teacher's weights {', '.join(files) or name.path} could not be read ({error}): the file is "
            "truncated or corrupt (an interrupted download or copy?); copy or download it again."
        ) from error


def _hub_error(name_or_path: str, error: Exception) -> OSError:
    offline = " (offline mode is set: HF_HUB_OFFLINE=1)" if hub_constants.HF_HUB_OFFLINE else ""
    return OSError(
        f"Could not load the teacher {name_or_path!r} from the Hugging Face Hub{offline}: "
        f"{type(error).__name__}: {error}\n"
        "If the Hub cannot be reached, pass a local folder instead: download it once where the Hub is reachable "
        f"(`hf download {name_or_path} --local-dir ./teacher`, or `model.save_pretrained('./teacher')` together "
        "with its processor) and call `load_teacher('./teacher')`. A model already in the local Hub cache loads "
        "with HF_HUB_OFFLINE=1."
    )


def _read_json(name: ModelName, filename: str, revision: str | None) -> dict | list | None:
    """A JSON file of a local folder or a Hub repo, or None when the repo has no such file."""
    if name.kind == "folder":
        path = Path(name.path, filename)
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        return json.loads(Path(hf_hub_download(name.name, filename, revision=revision)).read_text())
    except RemoteEntryNotFoundError:  # the repo was reached and has no such file
        return None
    except Exception as error:  # offline mode, no network, unknown repo, gated repo...
        raise _hub_error(name.name, error) from error


def _detect_backend(name: ModelName, revision: str | None) -> Literal["transformers", "timm"]:
    if name.is_timm_name:
        return "timm"
    config = _read_json(name, "config.json", revision)
    if config is None:
        raise ValueError(
            f"{name.name!r} has no config.json, so it is neither a transformers nor a timm model folder: "
            "pass the folder that holds the model's config.json and weights."
        )
    # timm's save_for_hf writes `architecture` (and no `model_type`); transformers configs always have model_type.
    return "timm" if "architecture" in config and "model_type" not in config else "transformers"


def _hash_weights(folder: str) -> str:
    """Content hash of a local folder's weight files: a folder path alone says nothing about what is in it."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.suffix in {".safetensors", ".bin", ".pth", ".pt"} and path.is_file():
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 24), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _hash_state_dict(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        # reshape(-1): a 0-d tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes; same bytes otherwise.
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _weights_id(name: ModelName, model: torch.nn.Module, revision: str | None) -> str:
    if name.kind == "folder":
        return "sha256:" + _hash_weights(name.path)
    # A Hub checkout is identified by its commit; transformers records the one it resolved.
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return f"commit:{commit or revision or 'main'}"


def _load_transformers(
    name: ModelName,
    *,
    revision: str | None,
    pooling: str,
    processor: Any,
    trust_remote_code: bool,
    **model_kwargs,
) -> Teacher:
    from transformers import AutoConfig, AutoModel

    name_or_path = name.name
    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as error:
        if name.kind != "folder":
            raise _hub_error(name_or_path, error) from error
        raise
    if config.model_type == "vit_mae":
        # ViT-MAE masks 75% of the patches at random even in eval mode unless told otherwise.
        model_kwargs.setdefault("mask_ratio", 0.0)
    if config.model_type == "vit" and pooling != "pooler":
        # DINO checkpoints have no pooler: building one would only add randomly initialised, unused weights.
        model_kwargs.setdefault("add_pooling_layer", False)
    with _readable_weights(name):
        model = AutoModel.from_pretrained(
            name_or_path, revision=revision, trust_remote_code=trust_remote_code, **model_kwargs
        )
    modules = _read_json(name, "modules.json", revision)
    st_pooling, normalize, max_length = _sentence_transformers_settings(name, revision, modules)
    if processor is None:
        processor = _load_teacher_processor(name_or_path, revision, model, trust_remote_code)
    teacher = _transformers_teacher(model, name_or_path, pooling, processor, st_pooling, normalize, max_length)
    teacher.revision = revision or getattr(model.config, "_commit_hash", None)
    teacher.weights_id = _weights_id(name, model, revision)
    return teacher


def _sentence_transformers_settings(
    name: ModelName, revision: str | None, modules: list | None
) -> tuple[str | None, bool, int | None]:
    """Pooling, normalisation and max length declared by a sentence-transformers folder (None when plain)."""
    if not modules:
        return None, False, None
    pooling, normalize = None, False
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind == "Pooling":
            pool_config = _read_json(name, f"{module['path']}/config.json", revision) or {}
            for mode in _TEXT_POOLINGS:
                key = "pooling_mode_cls_token" if mode == "cls" else f"pooling_mode_{mode}_tokens"
                if pool_config.get(key):
                    pooling = mode
        elif kind == "Normalize":
            normalize = True
    st_config = _read_json(name, "sentence_bert_config.json", revision) or {}
    return pooling, normalize, st_config.get("max_seq_length")


def _load_teacher_processor(name_or_path: str, revision: str | None, model: torch.nn.Module, trust_remote_code: bool):
    """The tokenizer (text encoders) or image processor stored with the teacher: its features need its own
    preprocessing."""
    return load_processor(
        name_or_path,
        "text" if model.main_input_name == "input_ids" else "image",
        revision,
        trust_remote_code=trust_remote_code,
        hint="the teacher must be fed with its own preprocessing: save it next to the model "
        "(`processor.save_pretrained(folder)`) or pass `processor=` to load_teacher",
    )


def _transformers_teacher(
    model: torch.nn.Module,
    name_or_path: str,
    pooling: str,
    processor: Any,
    st_pooling: str | None = None,
    normalize: bool = False,
    max_length: int | None = None,
) -> Teacher:
    config = model.config
    modality = "text" if model.main_input_name == "input_ids" else "image"
    if modality == "image" and model.main_input_name != "pixel_values":
        raise ValueError(
            f"Teacher {name_or_path!r} ({type(model).__name__}) takes {model.main_input_name!r}: hf_tcs supports "
            "image encoders (pixel_values) and text encoders (input_ids)."
        )
    if config.model_type == "vit_mae" and config.mask_ratio != 0.0:
        raise ValueError(
            f"The ViT-MAE teacher {name_or_path!r} masks {config.mask_ratio:.0%} of the patches at random, which "
            "makes its features random: load it with `ViTMAEModel.from_pretrained(..., mask_ratio=0.0)` or pass "
            "its name to load_teacher, which does that for you."
        )
    allowed = _TEXT_POOLINGS if modality == "text" else _VISION_POOLINGS
    if pooling == "auto":
        if modality == "text":
            pooling = st_pooling or "mean"
        elif config.model_type == "vit_mae":
            pooling = "mean"
        else:
            pooling = "cls" if config.model_type in _CLS_TOKEN_MODEL_TYPES else "pooler"
    elif pooling not in allowed:
        raise ValueError(f"pooling={pooling!r} is not available for a {modality} teacher: use one of {allowed}.")
    if modality == "text" and max_length is None:
        max_length = min(getattr(processor, "model_max_length", 512), getattr(config, "max_position_embeddings", 512))
    feature_dim = getattr(config, "hidden_size", None) or config.hidden_sizes[-1]
    return Teacher(
        model=model,
        name_or_path=name_or_path,
        backend="transformers",
        modality=modality,
        pooling=pooling,
        feature_dim=int(feature_dim),
        preprocessor=processor,
        normalize=normalize,
        max_length=max_length,
    )


def _load_timm(name: ModelName, *, revision: str | None, pooling: str, **model_kwargs) -> Teacher:
    import timm

    model_id = name.timm_model_id(revision)
    try:
        with _readable_weights(name):
            model = timm.create_model(model_id, pretrained=True, num_classes=0, **model_kwargs)
    except Exception as error:
        if name.kind != "folder":  # `hf-hub:` or a registry name: timm downloads its weights from the Hub
            raise _hub_error(name.name, error) from error
        raise
    teacher = _timm_teacher(model, name.name, pooling)
    teacher.revision = revision
    teacher.weights_id = "sha256:" + _hash_weights(name.path) if name.kind == "folder" else f"timm:{model_id}"
    return teacher


def _timm_teacher(model: torch.nn.Module, name_or_path: str, pooling: str) -> Teacher:
    if pooling not in ("auto", "pre_logits"):
        raise ValueError(
            f"timm teachers are pooled by their own head (`forward_head(pre_logits=True)`); got pooling={pooling!r}: "
            "pass pooling='auto', or choose the pooling with timm's `global_pool=` model argument."
        )
    return Teacher(
        model=model,
        name_or_path=name_or_path,
        backend="timm",
        modality="image",
        pooling="pre_logits",
        feature_dim=int(model.num_features),
        preprocessor=None,
    )


def _teacher_from_module(model: torch.nn.Module, *, pooling: str, processor: Any) -> Teacher:
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        name_or_path = model.config._name_or_path or type(model).__name__
        if processor is None:
            if parse_model_name(name_or_path).kind != "folder":
                raise ValueError(
                    f"A {type(model).__name__} passed as an object needs its preprocessing: pass "
                    "`processor=` (its image processor or tokenizer) to load_teacher."
                )
            processor = _load_teacher_processor(name_or_path, None, model, trust_remote_code=False)
        teacher = _transformers_teacher(model, name_or_path, pooling, processor)
    elif hasattr(model, "forward_head") and hasattr(model, "pretrained_cfg"):
        name_or_path = model.pretrained_cfg.get("hf_hub_id") or model.pretrained_cfg.get("architecture", "timm")
        teacher = _timm_teacher(model, name_or_path, pooling)
    else:
        raise TypeError(
            f"load_teacher got a {type(model).__name__}: pass a transformers PreTrainedModel, a timm model, a Hub "
            "id or a local folder."
        )
    # An in-memory model has no revision to pin: its weights are its identity.
    teacher.weights_id = "sha256:" + _hash_state_dict(model)
    return teacher


def load_configured_teacher(name_or_path: str, args: TCSConfig) -> Teacher:
    """Load a teacher with the config's revision, pooling and dtype, on this process's device.

    Rank 0 first, so that a Hub download happens once and the other ranks read the local cache; a failure on any rank
    stops every rank.
    """
    loading = args.main_process_first(desc="loading the teacher")
    with fail_together(args.distributed_state, "Loading the teacher"), loading:
        return load_teacher(
            name_or_path,
            revision=args.teacher_revision,
            pooling=args.teacher_pooling,
            device=args.device,
            dtype=args.teacher_dtype,
            hub_id=args.teacher_hub_id,
        )


def free_teacher(teacher: Teacher) -> None:
    """Nothing needs the teacher any more: free its memory before the student trains."""
    device = teacher.device
    teacher.model.to("meta")
    if device.type == "cuda":
        # PyTorch's caching allocator would keep the freed weights reserved, out of other processes' reach.
        torch.cuda.empty_cache()


def teacher_identity(teacher: Teacher | None, args: TCSConfig) -> dict[str, Any]:
    """Who the teacher is, as far as the trainer's arguments say: the loaded `Teacher`'s identity, else the configured
    teacher's name (its Hub id for a local copy: `teacher_hub_id`) and revision; empty without a teacher. For the
    model card, which prefers the provenance the coordinates carry."""
    if teacher is not None:
        return teacher.to_dict()
    name = args.teacher_hub_id or args.teacher_model_name_or_path
    return {"teacher": str(name), "teacher_revision": args.teacher_revision} if args.teacher_model_name_or_path else {}
