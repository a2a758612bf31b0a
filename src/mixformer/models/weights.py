"""Reading checkpoint files safely and recognising what they contain.

Supported files:

* a release file of the reference, any family (``*.pth.tar``: a dict whose ``net`` entry is the
  state_dict; stage-1 files lack ``score_branch.*`` / ``score_head.*``);
* a checkpoint written by this project (``net`` plus ``model_config`` and ``preset``);
* a pretrained backbone file, recognised by the registered families
  (:meth:`mixformer.models.backbones.Backbone.is_pretrained_file`): ImageNet CvT (raw
  ``stage{i}.*`` keys, SPEC 3.10), MAE ViT-B/L and ConvMAE-B/L (``model`` entry, SPEC-MIXVIT 6.3);
* a bare state_dict of the full network.

Nothing is ever unpickled with arbitrary code execution: files are read with
``torch.load(weights_only=True)``; classes of foreign projects pickled beside the tensors (e.g.
the reference's ``settings`` object) are replaced by inert stand-ins.

Before anything is loaded, the sizes recorded in the file's zip directory are checked: a small
file that claims far more uncompressed bytes (a deflated "zip bomb"; ``torch.save`` never
compresses) or more than the caller's ``max_bytes`` is refused without allocating the tensors.
A file written with a checksum (training checkpoints: :data:`mixformer.utils.CHECKSUM_KEY`) is
verified after loading; a mismatch names the corrupt file.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixformer.models.config import ModelConfig, get_config, list_models
from mixformer.models.errors import CheckpointError
from mixformer.models.registry import BACKBONES
from mixformer.utils import CHECKSUM_KEY, state_checksum

log = logging.getLogger(__name__)

#: State-dict prefixes of the score modules (absent from stage-1 files).
SCORE_PREFIXES = ("score_branch.", "score_head.")


class _Inert:
    """Stand-in for a pickled class of another project: stores its state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stub(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (_Inert,), {"__module__": "mixformer._foreign"})


#: A file may hold at most this many times its own size in uncompressed bytes ...
MAX_INFLATION = 16
#: ... unless its uncompressed total stays below this (small files are never refused).
INFLATION_FLOOR_BYTES = 256 << 20


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_sizes(path: str | Path, max_bytes: int | None = None) -> int:
    """Refuse a checkpoint whose zip directory claims absurd sizes, before loading anything.

    Args:
        path: a weights file (legacy non-zip files are not checked and return 0).
        max_bytes: refuse files holding more uncompressed bytes than this.

    Returns:
        The total uncompressed size of the file's entries.

    Raises:
        CheckpointError: more than ``max_bytes``, or more than :data:`MAX_INFLATION` times the
            file's size (and over :data:`INFLATION_FLOOR_BYTES`), or entries that claim more
            bytes than the file has.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return 0
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {exc}") from exc
    size = path.stat().st_size
    total = sum(i.file_size for i in infos)
    stored = sum(i.compress_size for i in infos)
    if stored > size or any(
        i.compress_type == zipfile.ZIP_STORED and i.compress_size != i.file_size for i in infos
    ):
        raise CheckpointError(
            f"{path}: corrupt checkpoint: its zip directory claims more data than the file holds"
        )
    if total > max(MAX_INFLATION * size, INFLATION_FLOOR_BYTES):
        raise CheckpointError(
            f"{path}: refusing to load: the {_gib(size)} file claims {_gib(total)} of "
            "uncompressed data (torch.save does not compress; not a genuine checkpoint)"
        )
    if max_bytes is not None and total > max_bytes:
        raise CheckpointError(
            f"{path}: refusing to load: it holds {_gib(total)}, more than the {_gib(max_bytes)} "
            "expected for this model"
        )
    return total


#: A checkpoint for a model may hold this many times the model's tensor bytes (the weights and
#: an optimizer's moments) plus :data:`LIMIT_SLACK_BYTES` ...
LIMIT_MARGIN = 4
LIMIT_SLACK_BYTES = 64 << 20


def size_limit(model: torch.nn.Module) -> int:
    """The most bytes a checkpoint of ``model`` may plausibly hold (for ``max_bytes``)."""
    own = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return LIMIT_MARGIN * own + LIMIT_SLACK_BYTES


def verify_checksum(obj: Any, path: str | Path) -> Any:
    """Check and drop the checksum entry of a loaded checkpoint, if it has one.

    Raises:
        CheckpointError: the contents differ from what was written (names ``path``).
    """
    if not isinstance(obj, dict) or CHECKSUM_KEY not in obj:
        return obj
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    if state_checksum(body) != obj[CHECKSUM_KEY]:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: its contents do not match the checksum stored when it "
            "was written"
        )
    return body


def load_file(path: str | Path, max_bytes: int | None = None) -> Any:
    """``torch.load`` with ``weights_only=True``; foreign pickled classes become inert stubs.

    Args:
        path: the weights file.
        max_bytes: refuse files holding more uncompressed bytes (see :func:`check_sizes`).

    Returns:
        The loaded object (without its checksum entry, which is verified).

    Raises:
        CheckpointError: missing, truncated, corrupt (checksum) or non-PyTorch file, or one
            whose recorded sizes are refused by :func:`check_sizes`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    check_sizes(path, max_bytes)
    return verify_checksum(_torch_load(path), path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: What torch's weights-only unpickler says about a global it refuses (its text around it is
#: several lines suggesting ``weights_only=False``, which this package never does).
_REFUSED_GLOBAL = re.compile(r"(?:unsupported|unallowed)? ?GLOBAL ([\w.]+)", re.IGNORECASE)
_PICKLE_REASON = re.compile(r"(Unsupported operand \d+|Unsupported class [\w.]+)")


def _refused(path: Path, names: list[str]) -> CheckpointError:
    return CheckpointError(
        f"refusing {path}: it holds pickled code or objects ({', '.join(names)}) that "
        "weights_only loading does not allow, so it was not loaded and nothing in it ran"
    )


def _unpickle_reason(path: Path, exc: BaseException) -> CheckpointError:
    """A one-line error for a weights-only unpickling failure of ``path``."""
    text = str(exc)
    names = sorted(set(_REFUSED_GLOBAL.findall(text)))
    if names:
        return _refused(path, names)
    m = _PICKLE_REASON.search(text)
    reason = f"not a pickle that weights_only loading can read ({m.group(1)})" if m else None
    return CheckpointError(
        f"cannot read {path} as a PyTorch checkpoint: {reason or _one_line(exc)}"
    )


def _check_container(path: Path) -> None:
    """Refuse empty, truncated and non-PyTorch files with a reason, before ``torch.load``."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: the file is empty")
    with open(path, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path):
        return
    if head.startswith(b"PK\x03\x04"):
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint: truncated or corrupt ({size} bytes, "
            "a zip archive without its central directory: the copy or save was cut short)"
        )
    if head[:1] != b"\x80":  # every pickle of protocol >= 2 (legacy torch.save) starts so
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint: not written by torch.save (neither a "
            f"zip archive nor a pickle; it starts with {head!r})"
        )


def _torch_load(path: Path) -> Any:
    _check_container(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # not a zip checkpoint: nothing more we can do safely
            raise _unpickle_reason(path, first) from exc
        stubs = [(_stub(n), n) for n in names]
        log.info("%s pickles foreign classes %s; loading them as inert stubs", path, names)
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise (_refused(path, names) if names else _unpickle_reason(path, exc)) from exc
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint: {_one_line(exc)}"
        ) from exc


@dataclass
class Checkpoint:
    """What a weights file holds, normalised.

    Attributes:
        kind: ``"network"`` (a full MixFormer state_dict of any family) or ``"backbone"`` (a
            pretrained backbone file: ImageNet CvT, MAE ViT, ConvMAE).
        state_dict: tensors (``network``: keys as in SPEC 1.13 / SPEC-MIXVIT 6.3; ``backbone``:
            the file's own keys, without a ``backbone.`` prefix).
        config: model config recorded by this project's checkpoints, else None.
        preset: preset name recorded by this project's checkpoints, else None.
        meta: other entries of the file (epoch, ...), tensors excluded.
        family: the backbone family the keys belong to (``"cvt"``, ``"vit"``, ``"convmae"``),
            None when no registered family recognises them.
    """

    kind: str
    state_dict: dict[str, torch.Tensor]
    config: ModelConfig | None = None
    preset: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    family: str | None = None


def read_checkpoint(path: str | Path, max_bytes: int | None = None) -> Checkpoint:
    """Read and classify a weights file (see module doc).

    Args:
        path: the weights file.
        max_bytes: refuse files holding more uncompressed bytes (see :func:`check_sizes`).
    """
    obj = load_file(path, max_bytes)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    sd = obj.get("net", obj.get("state_dict", obj.get("model", obj)))
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors found (looked at 'net', 'model')")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    meta = {
        k: v
        for k, v in obj.items()
        if k not in ("net", "state_dict", "model") and not _has_tensor(v)
    }
    config = None
    if isinstance(obj.get("model_config"), dict):
        try:
            config = ModelConfig.from_dict(obj["model_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable model_config: {exc}") from exc
    preset = obj.get("preset") if isinstance(obj.get("preset"), str) else None
    if config is not None and "tracking" not in obj["model_config"] and preset in list_models():
        # Files of version <= 0.1 recorded no tracker defaults: take the preset's.
        config = dataclasses.replace(config, tracking=get_config(preset).tracking)
    if any(k.startswith("backbone.") for k in sd):
        return Checkpoint("network", sd, config, preset, meta, network_family(sd))
    for name, cls in BACKBONES.items():
        if cls.is_pretrained_file(sd):
            return Checkpoint("backbone", sd, config, preset, meta, name)
    raise CheckpointError(
        f"{path}: keys look like neither a MixFormer network nor a pretrained backbone of a "
        f"known family ({', '.join(BACKBONES)}) (first keys: {list(sd)[:3]})"
    )


def _has_tensor(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, dict):
        return any(_has_tensor(x) for x in v.values())
    if isinstance(v, list | tuple):
        return any(_has_tensor(x) for x in v)
    return False


def network_family(sd: dict[str, torch.Tensor]) -> str | None:
    """The backbone family of a full-network state_dict, from its backbone keys."""
    keys = {k.removeprefix("backbone.") for k in sd if k.startswith("backbone.")}
    return next(
        (name for name, cls in BACKBONES.items() if cls.is_pretrained_file(dict.fromkeys(keys))),
        None,
    )


@functools.cache
def preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of preset ``name``'s online network, built on the meta device
    (no memory, no initialisation cost)."""
    from mixformer.models.mixformer import MixFormer

    with torch.device("meta"):
        model = MixFormer(get_config(name), name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _optional(key: str) -> bool:
    # score modules: ``score_branch.*`` (SPM), ``score_head.*`` (MixFormerV2)
    return key.startswith(SCORE_PREFIXES) or key.endswith("num_batches_tracked")


def matching_presets(sd: dict[str, torch.Tensor], prefix: str = "backbone.") -> list[str]:
    """Presets whose shapes fit ``sd``.

    ``prefix="backbone."``: ``sd`` is a full network (a stage-1 file without the score module
    fits too); ``prefix=""``: ``sd`` is a pretrained backbone file, which fits a preset when every
    key it shares with the preset's backbone has the same shape and it shares the block weights.
    """
    out = []
    for name in list_models():
        shapes = preset_shapes(name)
        if prefix:
            own = {k: v for k, v in shapes.items() if not _optional(k)}
            given = {k: tuple(v.shape) for k, v in sd.items() if not _optional(k)}
            if own == given:
                out.append(name)
        else:
            own = {k.removeprefix("backbone."): v for k, v in shapes.items()}
            shared = [k for k in sd if k in own and ".pos_embed" not in k and k != "pos_embed"]
            if (
                shared
                and all(tuple(sd[k].shape) == own[k] for k in shared)
                and any(".attn." in k for k in shared)
            ):
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
