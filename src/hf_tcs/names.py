"""Read a teacher or student name the one way every part of hf_tcs reads it, as timm's `parse_model_name` does.

A name is a local folder (`./dino`, `/data/dino`, `local-dir:./dino`), a Hub repo (`facebook/dinov2-small`,
`timm/resnet18.a1_in1k`, `hf-hub:timm/resnet18.a1_in1k@<revision>`), or an architecture to build (a transformers
`model_type` such as `bert`, a timm registry name such as `resnet18` or `vit_small_patch16_224.dino`). Loading the
teacher, building the student, finding the student's processor and writing a model card all need to know which one a
name is; `parse_model_name` decides it once, with one set of rules, so that they never disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

__all__ = ["ModelName", "parse_model_name"]

NameKind = Literal["folder", "path", "hub", "architecture", "timm_registry"]


@dataclass(frozen=True)
class ModelName:
    """A parsed model name; build it with `parse_model_name`.

    Attributes:
        name: the name as given.
        kind: `"folder"` (an existing local folder), `"path"` (written as a local path, `./x`, `~/x`, `/x`,
            `local-dir:x`, `a/b/c`, but no folder there: missing, or a file), `"hub"` (a Hub repo id), `"architecture"`
            (a transformers `model_type`) or `"timm_registry"` (a timm model name). A bare word that is neither of the
            last two is a Hub id without namespace (`bert-base-uncased`).
        path: the local path of a folder or path (`local-dir:` removed); None otherwise. `~` is not expanded: the shell
            does that, and transformers does not either.
        hub_id: the Hub repo id of a Hub name (`hf-hub:` and `@revision` removed); None otherwise.
        revision: the revision written into the name (`hf-hub:a/b@v1`); None when the name has none.
        prefix: `"hf-hub"` or `"local-dir"` when the name is written with timm's prefix, else None.
    """

    name: str
    kind: NameKind
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    prefix: Literal["hf-hub", "local-dir"] | None = None

    @property
    def hub_repo_id(self) -> str | None:
        """The `namespace/name` repo id a Hub page, a link or `base_model` can name; None for anything else (a local
        path, an architecture, a legacy id without namespace)."""
        return self.hub_id if self.kind == "hub" and "/" in self.hub_id else None

    @property
    def card_id(self) -> str:
        """The name as a model or dataset card shows it: the Hub id (with the name's revision), the folder's own name
        for a local path (whose full path means nothing on the Hub), else the name."""
        if self.kind == "hub":
            return f"{self.hub_id}@{self.revision}" if self.revision else self.hub_id
        if self.kind in ("folder", "path"):
            return Path(self.path).name
        return self.name

    @property
    def is_timm_name(self) -> bool:
        """Whether only timm reads this name: it has timm's `hf-hub:` / `local-dir:` prefix or is in the `timm/`
        namespace."""
        return self.prefix is not None or self.name.startswith("timm/")

    def timm_model_id(self, revision: str | None = None) -> str:
        """The name as `timm.create_model` takes it: `local-dir:<folder>`, `hf-hub:<repo>[@revision]`, or a registry
        name. `revision` pins a Hub repo unless the name carries its own; a registry name has none to pin."""
        if self.kind in ("folder", "path"):
            return f"local-dir:{self.path}"
        if self.hub_repo_id is None and self.prefix is None:
            return self.name  # a timm registry name, e.g. "vit_small_patch16_224.dino"
        revision = self.revision or revision
        return f"hf-hub:{self.hub_id}" + (f"@{revision}" if revision else "")


def parse_model_name(name: str | os.PathLike) -> ModelName:
    """Parse a teacher or student name (see `ModelName` for what each kind means).

    The rules, in order: `hf-hub:<repo>[@revision]` is a Hub repo; `local-dir:<path>` and an existing folder are
    local; a name that starts like a path (`.`, `~`, `/`) or is no valid repo id (`a/b/c`, `C:\\x`) is a local path
    that is no folder (callers say it does not exist instead of trying the Hub); `namespace/name` is a Hub repo; a bare
    word is a transformers `model_type`, else a timm registry name, else a Hub id without namespace.
    """
    name = str(name)
    if name.startswith("hf-hub:"):
        hub_id, _, revision = name.removeprefix("hf-hub:").partition("@")
        return ModelName(name, "hub", hub_id=hub_id, revision=revision or None, prefix="hf-hub")
    if name.startswith("local-dir:"):
        path = name.removeprefix("local-dir:")
        return ModelName(name, "folder" if os.path.isdir(path) else "path", path=path, prefix="local-dir")
    if os.path.isdir(name):
        return ModelName(name, "folder", path=name)
    if name.startswith((".", "~", os.sep)) or not _is_valid_repo_id(name):
        return ModelName(name, "path", path=name)
    if "/" in name:
        return ModelName(name, "hub", hub_id=name)
    return _parse_bare_word(name)


def _is_valid_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _parse_bare_word(name: str) -> ModelName:
    """A name without a slash: an architecture when transformers or timm knows it, else a legacy Hub id."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if name in CONFIG_MAPPING:
        return ModelName(name, "architecture")
    import timm  # imported only here: most names never need it

    if timm.is_model(name):
        return ModelName(name, "timm_registry")
    return ModelName(name, "hub", hub_id=name)
