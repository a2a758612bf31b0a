"""``build_model`` / ``list_models``: presets + weights -> a ready network."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from mixformer.models.config import DEFAULT_MODEL, ModelConfig, get_config, list_models
from mixformer.models.mixformer import MixFormer
from mixformer.models.weights import (
    Checkpoint,
    CheckpointError,
    matching_presets,
    read_checkpoint,
    size_limit,
)

log = logging.getLogger(__name__)

__all__ = ["build_model", "list_models", "load_weights", "default_weights_path"]


def default_weights_path(name: str) -> Path | None:
    """Path of the weights shipped in the package for preset ``name``, or None."""
    res = resources.files("mixformer") / "weights" / f"{name}.pth"
    return Path(str(res)) if res.is_file() else None


def _resolve_weights(name: str | None, weights: str | Path) -> Path:
    if str(weights) == "default":
        if name is None:
            raise ValueError("weights='default' needs a model name")
        path = default_weights_path(name)
        if path is None:
            raise CheckpointError(f"no default weights ship for {name!r}")
        return path
    return Path(weights)


def preset_config(name: str, ckpt: Checkpoint | None = None) -> ModelConfig:
    """The config :func:`build_model` gives preset ``name`` with weights ``ckpt``.

    That is the config recorded in ``ckpt`` when it is a checkpoint of this project written for
    the same preset (it may differ from the registered preset, e.g. in crop sizes), else the
    registered preset's.
    """
    if ckpt is not None and ckpt.config is not None and ckpt.preset == name:
        return ckpt.config
    return get_config(name)


def build_model(
    name: str | ModelConfig | None = DEFAULT_MODEL,
    weights: str | Path | None = None,
    **overrides: Any,
) -> MixFormer:
    """Build a MixFormer network in eval mode on the CPU.

    Args:
        name: a preset from :func:`list_models`, a :class:`ModelConfig`, or None to take the
            config recorded in ``weights`` (a checkpoint written by this project).
        weights: None (random init), ``"default"`` (weights shipped with the package), or a file:
            a reference release of the preset's family (``net`` entry, loaded strictly; stage-1
            files load with a warning about the missing score module), a checkpoint of this
            project, or a pretrained backbone file of the family (ImageNet CvT, MAE ViT,
            ConvMAE; the rest keeps its initialisation).
        **overrides: :class:`ModelConfig` fields to change (e.g. ``score_head=False``).
    Returns:
        The network (``eval()`` mode, float32, CPU).
    Raises:
        KeyError: unknown preset or config key.
        CheckpointError: unreadable file, or shapes that do not fit (the message names the
            preset they do fit, if any).
    """
    ckpt: Checkpoint | None = None
    if weights is not None:
        ckpt = read_checkpoint(_resolve_weights(name if isinstance(name, str) else None, weights))
    if isinstance(name, ModelConfig):
        config, preset = name, None
    elif name is None:
        if ckpt is None or ckpt.config is None:
            raise ValueError("name=None needs weights written by this project (with a config)")
        config, preset = ckpt.config, ckpt.preset
    else:
        config, preset = preset_config(name, ckpt), name
    if overrides:
        config = config.replace(**overrides)
    model = MixFormer(config, name=preset)
    if ckpt is not None:
        load_weights(model, ckpt)
    return model.eval()


def load_weights(model: MixFormer, ckpt: Checkpoint | str | Path) -> MixFormer:
    """Load a checkpoint into ``model`` in place (see :func:`build_model` for the file kinds).

    A file is refused before its tensors are read when it holds far more bytes than ``model``
    could use (:func:`mixformer.models.weights.size_limit`). A file of another family is refused
    naming its family and the presets its shapes fit.
    """
    if not isinstance(ckpt, Checkpoint):
        ckpt = read_checkpoint(ckpt, max_bytes=size_limit(model))
    family = model.config.family
    # a backbone may read pretrained files of another family (MixFormerV2: MAE ViT files)
    readable = (family, *getattr(model.backbone, "pretrained_families", ()))
    foreign = ckpt.family not in (readable if ckpt.kind == "backbone" else (family,))
    if ckpt.family is not None and foreign:
        prefix = "backbone." if ckpt.kind == "network" else ""
        fits = _fits(ckpt.state_dict, prefix)
        where = f" ({fits})" if fits else ""
        what = "network" if ckpt.kind == "network" else "pretrained backbone"
        raise CheckpointError(
            f"this is a {ckpt.family} {what} file{where}; model "
            f"{model.name or 'of this config'!r} is a {family} network"
        )
    if ckpt.kind == "backbone":
        try:
            ignored = model.backbone.load_pretrained(ckpt.state_dict)
        except CheckpointError as exc:
            fits = _fits(ckpt.state_dict, prefix="")
            hint = f"; {fits}" if fits else ""
            raise CheckpointError(f"{exc}{hint}") from exc
        if ignored:
            log.info(
                "%s backbone file: ignoring %d keys (e.g. %s)", family, len(ignored), ignored[:3]
            )
        return model
    sd = dict(ckpt.state_dict)
    own = model.state_dict()
    mismatched = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        where = _fits(sd) or "no preset fits"
        raise CheckpointError(
            f"checkpoint does not fit model {model.name or 'of this config'!r}: {where} "
            f"(first mismatch: {mismatched[0]} {tuple(sd[mismatched[0]].shape)} vs "
            f"{tuple(own[mismatched[0]].shape)})"
        )
    if model.config.head_bn == "frozen":
        sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if unexpected or [k for k in missing if not k.startswith(f"{model.score_attr}.")]:
        fits = _fits(sd) if ckpt.family is not None else ""
        hint = f"; {fits}" if fits else ""
        raise CheckpointError(
            f"checkpoint keys do not match the model{hint}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
    if missing:
        log.warning(
            "checkpoint has no score module (a stage-1 file?): %d keys left at their "
            "initial values: %s%s",
            len(missing),
            ", ".join(missing[:4]),
            "..." if len(missing) > 4 else "",
        )
    model.load_state_dict(sd, strict=False)
    return model


def _fits(sd: dict, prefix: str = "backbone.") -> str:
    """``"its shapes fit 'a', 'b'"`` for the presets ``sd`` fits, ``""`` when none does."""
    fits = matching_presets(sd, prefix)
    return f"its shapes fit {', '.join(repr(f) for f in fits)}" if fits else ""
