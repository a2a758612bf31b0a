"""Deep-to-shallow distillation of MixFormerV2 (SPEC-DISTILL 4.1, 4.2): the progressive layer
removal schedule, the per-block residual weights, and the conversion of a phased-out student
into the shallower student (blocks dropped and renumbered).

During the removal run (2a) every residual branch of a removed block ``j`` is scaled by
``rho(epoch)`` (both branches, after DropPath); :func:`remove_rate` phases it out along half a
cosine over a fixed 40 epochs (quirk 8.1: 1-based epochs, ``min(e + 1, 40)``, so the first
epoch already runs at 0.99384 and epoch 39 onward at exactly 0). At ``rho = 0`` a removed block
is the identity, and the network equals the network of its kept blocks: :func:`shallow_student`
builds that network from the deep one (:func:`drop_blocks` on its state dict).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import torch

from mixformer.models import MixFormer, MixFormerV2

__all__ = [
    "PHASE_OUT_EPOCHS",
    "block_rates",
    "drop_blocks",
    "kept_blocks",
    "remove_rate",
    "removed_parameter",
    "shallow_student",
]

PHASE_OUT_EPOCHS = 40
"""Epochs of the cosine phase-out, hard-coded by the reference whatever the run length."""

_BLOCK_KEY = re.compile(r"^(backbone\.blocks\.)(\d+)(\..*)$")


def remove_rate(epoch: int, phase_out: int = PHASE_OUT_EPOCHS) -> float:
    """Weight ``rho`` of the removed blocks' residual branches in (1-based) ``epoch``:
    ``0.5 * (1 + cos(pi * min(epoch + 1, phase_out) / phase_out))`` (SPEC-DISTILL 4.1, quirk
    8.1), a Python float; 0.0 exactly from ``epoch = phase_out - 1`` on.

    Raises:
        ValueError: ``epoch < 1`` or ``phase_out < 1``.
    """
    if epoch < 1 or phase_out < 1:
        raise ValueError(f"epochs are 1-based and phase_out >= 1 (got {epoch}, {phase_out})")
    # cos(pi) is -1.0 exactly in IEEE doubles: the end of the phase-out is 0.0, no residue
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch + 1, phase_out) / phase_out))


def block_rates(depth: int, remove_layers: Iterable[int], rho: float) -> list[float]:
    """Residual weight of each of ``depth`` blocks: ``rho`` for the removed ones, 1.0 else.

    Raises:
        ValueError: a removed index outside ``0 .. depth - 1``.
    """
    removed = set(remove_layers)
    bad = sorted(i for i in removed if not 0 <= i < depth)
    if bad:
        raise ValueError(f"remove_layers {bad} outside the {depth} blocks of the student")
    return [rho if j in removed else 1.0 for j in range(depth)]


def kept_blocks(depth: int, remove_layers: Iterable[int]) -> list[int]:
    """Indices of the blocks that survive, in order (new block ``i`` is old ``kept[i]``)."""
    removed = set(remove_layers)
    return [j for j in range(depth) if j not in removed]


def removed_parameter(name: str, remove_layers: Iterable[int]) -> bool:
    """Whether the parameter ``name`` belongs to a removed block: the reference's substring
    test ``f"blocks.{i}." in name`` (SPEC-DISTILL 2.3, quirk 8.5)."""
    return any(f"blocks.{i}." in name for i in remove_layers)


def drop_blocks(
    state_dict: Mapping[str, torch.Tensor], invalid_layers: Sequence[int]
) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]]]:
    """The reference's ``remove_layers(checkpoint, INVALID_LAYERS)`` (SPEC-DISTILL 4.2).

    Keys of the listed blocks (block index = third dot-separated field of
    ``backbone.blocks.<i>.*``) are dropped, the remaining blocks renumbered consecutively in
    their order; keys holding ``pos_embed_t``, ``pos_embed_s`` or ``mask_token`` are dropped
    (the fixed tables are recomputed by the network) when ``invalid_layers`` is not empty
    (with an empty list the reference returns the dict unchanged, SPEC-DISTILL 4.1); every other
    key passes unchanged.

    Returns:
        ``(new_state_dict, renames)``: ``renames`` lists the ``(old, new)`` names of the block
        keys whose index changed, in key order.
    """
    if not invalid_layers:
        return dict(state_dict), []
    invalid = set(invalid_layers)
    indices = sorted({int(m.group(2)) for k in state_dict if (m := _BLOCK_KEY.match(k))} - invalid)
    new_index = {old: new for new, old in enumerate(indices)}
    out: dict[str, torch.Tensor] = {}
    renames: list[tuple[str, str]] = []
    for key, value in state_dict.items():
        if any(s in key for s in ("pos_embed_t", "pos_embed_s", "mask_token")):
            continue
        m = _BLOCK_KEY.match(key)
        if m is None:
            out[key] = value
            continue
        old = int(m.group(2))
        if old in invalid:
            continue
        new_key = f"{m.group(1)}{new_index[old]}{m.group(3)}"
        if new_key != key:
            renames.append((key, new_key))
        out[new_key] = value
    return out, renames


def shallow_student(student: MixFormerV2, remove_layers: Sequence[int]) -> MixFormerV2:
    """The shallower MixFormerV2 of ``student``'s kept blocks (run 2b's initialisation).

    The new network has ``depth - len(remove_layers)`` blocks (DropPath rates re-ramped over
    the new depth, as the reference's 8-block config does) and ``student``'s weights through
    :func:`drop_blocks`; it is returned in ``student``'s train/eval mode, on its device. With
    the removed blocks at weight 0, ``student`` and the result compute the same function.

    Raises:
        ValueError: ``student`` is not a MixFormerV2 or would lose every block.
    """
    if not isinstance(student, MixFormerV2):
        raise ValueError(f"layer removal needs a MixFormerV2 student, not {type(student).__name__}")
    cfg = student.config
    depth = cfg.backbone.depth
    keep = kept_blocks(depth, remove_layers)
    block_rates(depth, remove_layers, 0.0)  # validates the indices
    if not keep:
        raise ValueError(f"removing {list(remove_layers)} leaves no block")
    new_cfg = cfg.replace(depth=len(keep))
    device = next(student.parameters()).device
    with torch.device(device):
        shallow = MixFormer(new_cfg, student.name)
    sd, _ = drop_blocks(student.state_dict(), sorted(set(remove_layers)))
    missing, unexpected = shallow.load_state_dict(sd, strict=False)
    # only the recomputed (identical) position tables may be missing
    left = [k for k in missing if not k.endswith(("pos_embed_s", "pos_embed_t"))]
    if left or unexpected:
        raise RuntimeError(f"conversion mismatch: missing {left}, unexpected {unexpected}")
    return shallow.train(student.training)
