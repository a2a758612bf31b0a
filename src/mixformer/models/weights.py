"""Reading checkpoint files safely and recognising what they contain.

Supported files:

* a release file of the reference (``*.pth.tar``: a dict whose ``net`` entry is the state_dict;
  stage-1 files lack ``score_branch.*``);
* a checkpoint written by this project (``net`` plus ``model_config`` and ``preset``);
* an ImageNet CvT classification checkpoint (a raw state_dict with ``stage{i}.*`` keys, SPEC 3.10);
* a bare state_dict of the full network.

Nothing is ever unpickled with arbitrary code execution: files are read with
``torch.load(weights_only=True)``; classes of foreign projects pickled beside the tensors (e.g.
the reference's ``settings`` object) are replaced by inert stand-ins.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixformer.models.config import ModelConfig, get_config, list_models

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A weights file cannot be read or does not fit the requested model."""


class _Inert:
    """Stand-in for a pickled class of another project: stores its state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stub(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (_Inert,), {"__module__": "mixformer._foreign"})


def load_file(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True``; foreign pickled classes become inert stubs.

    Raises:
        CheckpointError: missing, truncated or non-PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # not a zip checkpoint: nothing more we can do safely
            raise CheckpointError(f"cannot read {path} safely: {first}") from exc
        stubs = [(_stub(n), n) for n in names]
        log.info("%s pickles foreign classes %s; loading them as inert stubs", path, names)
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read {path} safely: {exc}") from exc
    except Exception as exc:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {exc}") from exc


@dataclass
class Checkpoint:
    """What a weights file holds, normalised.

    Attributes:
        kind: ``"network"`` (full MixFormer state_dict) or ``"cvt"`` (ImageNet backbone only).
        state_dict: tensors, keys as in SPEC 1.13 (``cvt``: without the ``backbone.`` prefix).
        config: model config recorded by this project's checkpoints, else None.
        preset: preset name recorded by this project's checkpoints, else None.
        meta: other entries of the file (epoch, ...), tensors excluded.
    """

    kind: str
    state_dict: dict[str, torch.Tensor]
    config: ModelConfig | None = None
    preset: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and classify a weights file (see module doc)."""
    obj = load_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    sd = obj.get("net", obj.get("state_dict", obj))
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors found (looked at 'net')")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    meta = {k: v for k, v in obj.items() if k not in ("net", "state_dict") and not _has_tensor(v)}
    config = None
    if isinstance(obj.get("model_config"), dict):
        config = ModelConfig.from_dict(obj["model_config"])
    preset = obj.get("preset") if isinstance(obj.get("preset"), str) else None
    if any(k.startswith("backbone.") for k in sd):
        kind = "network"
    elif any(k.startswith("stage0.") for k in sd):
        kind = "cvt"
    else:
        raise CheckpointError(
            f"{path}: keys look like neither a MixFormer network nor a CvT backbone "
            f"(first keys: {list(sd)[:3]})"
        )
    return Checkpoint(kind, sd, config, preset, meta)


def _has_tensor(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, dict):
        return any(_has_tensor(x) for x in v.values())
    if isinstance(v, list | tuple):
        return any(_has_tensor(x) for x in v)
    return False


def infer_architecture(sd: dict[str, torch.Tensor], prefix: str = "backbone.") -> dict[str, Any]:
    """Widths, depths and head width implied by a state_dict's shapes (heads cannot be seen)."""
    dims, depths = [], []
    for i in range(3):
        w = sd.get(f"{prefix}stage{i}.patch_embed.proj.weight")
        if w is None:
            raise CheckpointError(f"missing key {prefix}stage{i}.patch_embed.proj.weight")
        dims.append(int(w.shape[0]))
        pat = re.compile(rf"^{re.escape(prefix)}stage{i}\.blocks\.(\d+)\.")
        idx = {int(m.group(1)) for k in sd if (m := pat.match(k))}
        depths.append(max(idx) + 1 if idx else 0)
    arch: dict[str, Any] = {"dim_embed": tuple(dims), "depth": tuple(depths)}
    head = sd.get("box_head.conv1_tl.0.weight")
    if head is not None:
        arch["head_dim"] = int(head.shape[0])
    return arch


def matching_presets(sd: dict[str, torch.Tensor], prefix: str = "backbone.") -> list[str]:
    """Presets whose shapes fit ``sd`` (for CvT files only the stage widths are compared)."""
    arch = infer_architecture(sd, prefix)
    out = []
    for name in list_models():
        cfg = get_config(name)
        if cfg.dim_embed != arch["dim_embed"]:
            continue
        if prefix and (cfg.depth != arch["depth"] or cfg.head_dim != arch.get("head_dim")):
            continue
        out.append(name)
    return out


def save_weights(model: torch.nn.Module, path: str | Path, **extra: Any) -> None:
    """Write a slim checkpoint of this project: ``net``, ``model_config``, ``preset`` (+ ``extra``).

    ``build_model(None, weights=path)`` rebuilds the network from it alone. Written atomically.
    """
    from mixformer.utils import atomic_save_torch

    obj: dict[str, Any] = {
        "net": model.state_dict(),
        "model_config": model.config.to_dict(),  # type: ignore[union-attr]
        "preset": getattr(model, "name", None),
    }
    obj.update(extra)
    atomic_save_torch(obj, path)
