"""Student side of TCS: a coordinate head that replaces a classifier for training and folds back for inference.

`attach_tcs_head` swaps the final ``nn.Linear(d_s -> C)`` of any Hugging Face classification model for a
`TCSHead`: ``Linear(d_s -> k)`` (the student's coordinates ``z_s`` in the teacher's coordinate system) followed by
``Linear(k -> C)``, with the coordinates multiplied by ``tcs_gate * mask`` in between. The trainer reads ``z_s`` after
``model(**inputs)`` with `student_coordinates` and matches it to the teacher's coordinates ``z_t``.

Both halves are linear and the gate is a constant at inference, so `fold_tcs_head` multiplies them back into a single
``nn.Linear(d_s -> C)`` at the original attribute path: the saved model is the unchanged class, config and state-dict
keys, with no inference cost and no dependency on this library.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "TCSHead",
    "attach_tcs_head",
    "check_student",
    "find_classifier",
    "fit_projector",
    "fold_tcs_head",
    "folded_tcs_head",
    "get_tcs_head",
    "student_coordinates",
]

# Attributes under which HF classification models keep their head (XLNet: logits_proj; BART, T5:
# classification_head). Only these are searched: any other Linear of the right width (a bare encoder's pooler, a
# projection) is not a classifier, however well its shape fits.
_CLASSIFIER_ROOTS = ("classifier", "score", "classification_head", "logits_proj")
_SUPPORTED_STUDENTS = (
    "hf_tcs trains classification models: a transformers `*ForImageClassification` or `*ForSequenceClassification` "
    "model, or a timm model through `TimmWrapperForImageClassification`, whose final classifier (`classifier`, "
    "`score`, ...) is an nn.Linear(d, num_labels)"
)


class TCSHead(nn.Module):
    """Classifier ``Linear(d_s -> C)`` factored through k coordinates: ``classifier(projector(h) * tcs_gate * mask)``.

    Two names, two things: the *mask* says which coordinates tailoring has kept; the *gate* (`tcs_gate`) is a
    constant 1 that only measures, through its gradient, how much each coordinate matters.

    Attributes:
        projector: ``Linear(d_s -> k)``; its output is the student's coordinates ``z_s``.
        classifier: ``Linear(k -> C)`` on the gated coordinates.
        mask: float buffer (k,), 1.0 = active coordinate. A buffer so that tailoring survives checkpoints.
        tcs_gate: parameter of ones (k,). It is only there to collect ``dL/dgate`` (= dL/dmask for active coordinates)
            in ``tcs_gate.grad`` for tailoring; the trainer must keep it out of the optimizer (match parameter names
            containing ``"tcs_gate"``) so that it stays at 1.
        importance: float buffer (k,) of zeros where a tailoring callback accumulates ``|dL/dgate|`` between selection
            steps; a buffer so that a run resumed from a checkpoint makes the same choices. The head never reads it.
        last_coordinates: the unmasked ``z_s`` of the last forward pass, shape ``(*batch, k)``; the loss applies the
            mask itself.
    """

    def __init__(
        self, in_features: int, num_coordinates: int, num_labels: int, *, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__()
        if num_coordinates < 1:
            raise ValueError(f"num_coordinates must be >= 1, got {num_coordinates}; pass the coordinate system's k.")
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.num_coordinates, self.num_labels = in_features, num_coordinates, num_labels
        self.projector = nn.Linear(in_features, num_coordinates, bias=bias, **factory)
        self.classifier = nn.Linear(num_coordinates, num_labels, bias=bias, **factory)
        self.register_buffer("mask", torch.ones(num_coordinates, **factory))
        self.register_buffer("importance", torch.zeros(num_coordinates, **factory))
        self.tcs_gate = nn.Parameter(torch.ones(num_coordinates, **factory))
        self.last_coordinates: torch.Tensor | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, num_coordinates: int) -> "TCSHead":
        """Build a head with ``linear``'s input/output sizes, bias setting, dtype and device (fresh weights)."""
        weight = linear.weight
        return cls(
            linear.in_features,
            num_coordinates,
            linear.out_features,
            bias=linear.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )

    def multiplier(self) -> torch.Tensor:
        """What the coordinates are multiplied by, ``tcs_gate * mask``, shape (k,): the mask, with the gate's
        gradient attached."""
        return self.tcs_gate * self.mask

    @property
    def active(self) -> torch.Tensor:
        """The mask as a bool tensor (k,): True for coordinates still in use."""
        return self.mask > 0

    @property
    def num_active(self) -> int:
        """Number of active coordinates."""
        return int(self.active.sum())

    @torch.no_grad()
    def drop(self, indices: Sequence[int] | torch.Tensor) -> None:
        """Deactivate coordinates for good (mask entries set to 0); ``indices`` are ints or a bool tensor (k,)."""
        index = torch.as_tensor(indices, device=self.mask.device)
        index = (index.nonzero() if index.dtype == torch.bool else index).long().flatten()
        if index.numel() and (index.min() < 0 or index.max() >= self.num_coordinates):
            raise IndexError(f"Coordinate indices must be in [0, {self.num_coordinates}), got {index.tolist()}.")
        self.mask[index] = 0.0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Map features ``(*batch, d_s)`` to logits ``(*batch, C)``; stores ``z_s`` ``(*batch, k)``."""
        coordinates = self.projector(hidden)
        self.last_coordinates = coordinates
        return self.classifier(coordinates * self.multiplier())

    @torch.no_grad()
    def fold(self) -> nn.Linear:
        """Return the equivalent ``nn.Linear(d_s -> C)`` (computed in float64, cast to this head's dtype/device)."""
        gate = self.multiplier().double()
        w_p, w_c = self.projector.weight.double(), self.classifier.weight.double()
        linear = nn.Linear(
            self.in_features,
            self.num_labels,
            bias=self.classifier.bias is not None,
            device=w_c.device,
            dtype=self.classifier.weight.dtype,
        )
        linear.weight.copy_(w_c @ (gate[:, None] * w_p))
        if linear.bias is not None:
            linear.bias.copy_(w_c @ (gate * self.projector.bias.double()) + self.classifier.bias.double())
        return linear.train(self.training)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_coordinates={self.num_coordinates}, num_labels={self.num_labels}"


# The ridge penalties `fit_projector` chooses from, relative to the mean eigenvalue of the features' Gram matrix.
PROJECTOR_RIDGES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
# The held-out R² below which `fit_projector` leaves the projector as it is. Measured on Banking77 (mpnet teacher):
# a pretrained MiniLM student 0.47; a BERT from scratch 0.0006, whose fitted projector cost 2.7 points.
PROJECTOR_MIN_R2 = 0.1


@torch.no_grad()
def fit_projector(
    head: TCSHead,
    features: torch.Tensor,
    coordinates: torch.Tensor,
    *,
    held_out: float = 0.2,
    seed: int = 0,
    min_r2: float = PROJECTOR_MIN_R2,
) -> float:
    """Set ``head.projector`` to the ridge least-squares map from the student's features to the teacher coordinates.

    A fresh projector starts near zero, and so do the student's coordinates; with a pretrained student fine-tuned at a
    small learning rate (whose pooled features may be tiny, e.g. a BERT pooler's) it can stay there for the whole run,
    so that the coordinate loss only pulls the backbone while the factorised head hardly learns the task. Fitted on
    the student's features at the start, the projector maps them to their best linear estimate of the teacher's
    coordinates from the first step (linear probing before fine-tuning, as in LP-FT).

    The ridge penalty is chosen from `PROJECTOR_RIDGES` (relative to the features' scale) by the R² on a held-out
    share of the examples, then the map is refitted on all of them. Features that do not predict the coordinates
    (a randomly initialised student: its least-squares map fits noise) explain next to nothing of the held-out
    examples: below `min_r2` the projector is left as it is.

    Args:
        head: the `TCSHead` whose projector is set (its classifier is left as it is).
        features: ``(N, d_s)`` the head's inputs on N training examples.
        coordinates: ``(N, k)`` the scaled teacher coordinates of the same examples (the loss's targets).
        held_out: share of the examples that choose the ridge penalty.
        seed: seed of the held-out draw.
        min_r2: the held-out R² the map must reach to be used.

    Returns:
        The share of the held-out targets' variance the chosen map explains (R²). The projector was set if and only
        if it is at least `min_r2`; with fewer than 10 examples nothing is fitted and it is 0.
    """
    weight = head.projector.weight
    expected = (features.shape[0], head.num_coordinates)
    if features.ndim != 2 or features.shape[1] != head.in_features or coordinates.shape != expected:
        raise ValueError(
            f"fit_projector takes features (N, {head.in_features}) and coordinates (N, {head.num_coordinates}), got "
            f"{tuple(features.shape)} and {tuple(coordinates.shape)}."
        )
    h, z = features.double().cpu(), coordinates.double().cpu()
    if not (torch.isfinite(h).all() and torch.isfinite(z).all()):
        raise ValueError(
            "The student's features or the teacher coordinates hold NaN or inf, so the projector cannot be fitted: "
            "check the student's weights and inputs (or set tcs_projector_init='random')."
        )
    count = h.shape[0]
    validation = max(1, round(held_out * count))
    if count < 10 or validation >= count:
        return 0.0
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    fit, check = order[validation:], order[:validation]
    has_bias = head.projector.bias is not None

    def solutions(rows: torch.Tensor, ridges) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Feature and target means of ``rows``, and the (d_s, k) ridge map for each relative penalty."""
        h_mean = h[rows].mean(0) if has_bias else h.new_zeros(h.shape[1])
        z_mean = z[rows].mean(0) if has_bias else z.new_zeros(z.shape[1])
        centred = h[rows] - h_mean
        eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred)
        eigenvalues = eigenvalues.clamp(min=0)
        projected = vectors.T @ (centred.T @ (z[rows] - z_mean))
        scale = eigenvalues.mean().clamp(min=torch.finfo(torch.float64).tiny)
        maps = [vectors @ (projected / (eigenvalues + ridge * scale)[:, None]) for ridge in ridges]
        return h_mean, z_mean, maps

    h_mean, z_mean, maps = solutions(fit, PROJECTOR_RIDGES)
    total = ((z[check] - z_mean) ** 2).sum().clamp(min=torch.finfo(torch.float64).tiny)
    scores = [float(1 - (((h[check] - h_mean) @ m + z_mean - z[check]) ** 2).sum() / total) for m in maps]
    best = max(range(len(scores)), key=scores.__getitem__)
    if scores[best] < min_r2:
        return scores[best]
    h_mean, z_mean, (solution,) = solutions(torch.arange(count), [PROJECTOR_RIDGES[best]])
    weight.copy_(solution.T.to(weight.dtype))
    if has_bias:
        head.projector.bias.copy_((z_mean - h_mean @ solution).to(weight.dtype))
    return scores[best]


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP / accelerate (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _locate(model: nn.Module, module: nn.Module) -> tuple[nn.Module, str]:
    """Parent and attribute name of ``module`` inside ``model``."""
    name = next(name for name, candidate in model.named_modules() if candidate is module)
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name), attr


def get_tcs_head(model: nn.Module) -> TCSHead | None:
    """The `TCSHead` attached to ``model`` (wrappers allowed), or None."""
    return next((module for module in _unwrap(model).modules() if isinstance(module, TCSHead)), None)


def find_classifier(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """Locate the final ``nn.Linear(d_s -> num_labels)`` of a classification model.

    Searches, in order, the timm head of ``TimmWrapper*`` models (``timm_model.get_classifier()``, e.g. ``fc``,
    ``head`` or ``head.fc``), then ``classifier`` / ``score`` / ``classification_head`` / ``logits_proj`` (covering
    ``classifier.1`` and ``classifier.out_proj``); within each, the last ``nn.Linear`` in registration order whose
    ``out_features`` equals ``model.config.num_labels`` (any width if the model has no config). Never the rest of the
    model: a bare encoder (``ViTModel``) has no classifier, even when a layer of it has the right width.

    Returns:
        ``(parent, attribute_name, linear)`` with ``getattr(parent, attribute_name) is linear``.
    """
    model = _unwrap(model)
    if get_tcs_head(model) is not None:
        raise ValueError(
            f"{type(model).__name__} already has a TCS head; reuse it with `get_tcs_head(model)`, or fold it with "
            "`fold_tcs_head(model)` before attaching a new one."
        )
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    roots = [getattr(model, name, None) for name in _CLASSIFIER_ROOTS]
    timm_model = getattr(model, "timm_model", None)
    if hasattr(timm_model, "get_classifier"):
        roots.insert(0, timm_model.get_classifier())
    for root in roots:
        if not isinstance(root, nn.Module):
            continue
        linears = [m for m in root.modules() if isinstance(m, nn.Linear) and num_labels in (None, m.out_features)]
        if linears:
            return *_locate(model, linears[-1]), linears[-1]
    raise ValueError(
        f"Could not find the classification head of {type(model).__name__}: looked for a final "
        f"nn.Linear(d, num_labels={num_labels}) under {' / '.join(_CLASSIFIER_ROOTS)}. {_SUPPORTED_STUDENTS}. Load "
        "the student with a classification head and the task's number of labels, e.g. "
        "`AutoModelForImageClassification.from_pretrained(..., num_labels=N)` or "
        "`AutoModelForSequenceClassification.from_pretrained(..., num_labels=N)`."
    )


def check_student(model: nn.Module) -> int:
    """The student's number of labels, once it is known to be a classification model hf_tcs can train.

    Raises one error naming the student classes that work for anything else: a bare encoder (`ViTModel`), a custom
    `nn.Module` without `config.num_labels`, a model without a classifier.
    """
    num_labels = getattr(getattr(_unwrap(model), "config", None), "num_labels", None)
    if not isinstance(num_labels, int):
        raise ValueError(
            f"The student {type(_unwrap(model)).__name__} has no `config.num_labels`: {_SUPPORTED_STUDENTS}. Wrap a "
            "custom network as a `PreTrainedModel` with such a classifier, or load a classification model, e.g. "
            "`AutoModelForImageClassification.from_pretrained(..., num_labels=N)`."
        )
    if get_tcs_head(model) is None:
        find_classifier(model)
    return num_labels


def attach_tcs_head(model: nn.Module, num_coordinates: int) -> TCSHead:
    """Replace the model's final classifier with a fresh `TCSHead` of ``num_coordinates`` coordinates, in place.

    The original classifier's weights are discarded: the head is trained with the student. ``model.config`` is left
    untouched, so after `fold_tcs_head` the model saves as its original class.
    """
    parent, attr, linear = find_classifier(model)
    head = TCSHead.from_linear(linear, num_coordinates).train(linear.training)
    setattr(parent, attr, head)
    return head


def _head_slot(model: nn.Module) -> tuple[nn.Module, TCSHead, nn.Module, str]:
    """Unwrapped model, its head, and the head's parent and attribute name; ValueError without a head."""
    model = _unwrap(model)
    head = get_tcs_head(model)
    if head is None:
        raise ValueError(
            f"{type(model).__name__} has no TCS head to fold; attach one with `attach_tcs_head(model, k)` (or the "
            "model is already folded)."
        )
    return model, head, *_locate(model, head)


def fold_tcs_head(model: nn.Module) -> nn.Module:
    """Replace the `TCSHead` by the single equivalent ``nn.Linear`` in place and return the (unwrapped) model."""
    model, head, parent, attr = _head_slot(model)
    setattr(parent, attr, head.fold())
    return model


@contextmanager
def folded_tcs_head(model: nn.Module) -> Iterator[nn.Module]:
    """Fold the head for the duration of a ``with`` block, then put the same head back.

    For saving the plain model (e.g. ``save_pretrained``) in the middle of training without losing the head, its
    optimizer state or its mask. Yields the unwrapped model.
    """
    model, head, parent, attr = _head_slot(model)
    setattr(parent, attr, head.fold())
    try:
        yield model
    finally:
        setattr(parent, attr, head)


def student_coordinates(model: nn.Module) -> torch.Tensor:
    """The student's coordinates ``z_s`` ``(*batch, k)`` from the last forward pass (wrapped models allowed).

    ``*batch`` is ``(B,)`` for models that pool before the classifier; models that score every token and pool
    afterwards (decoder ``*ForSequenceClassification``, ``score``) give ``(B, T)``.
    """
    head = get_tcs_head(model)
    if head is None:
        raise ValueError(f"{type(_unwrap(model)).__name__} has no TCS head; call `attach_tcs_head(model, k)` first.")
    if head.last_coordinates is None:
        raise RuntimeError("The TCS head has not run yet; call `model(**inputs)` before reading the coordinates.")
    return head.last_coordinates


def check_finite_weights(model: torch.nn.Module) -> None:
    """Refuse to save a student whose training diverged: its NaN/inf weights would give NaN logits to every user."""
    bad = [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if bad:
        raise ValueError(
            f"The student's weights hold NaN or inf ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}), so it is "
            "not saved: training diverged. Check the logged losses, lower the learning rate (or use gradient "
            "clipping, `max_grad_norm`), and check the teacher coordinates."
        )
