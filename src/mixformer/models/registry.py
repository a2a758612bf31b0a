"""The name registries of the models: backbone families, box heads, networks and presets.

Every name lookup of :mod:`mixformer.models` goes through one :class:`Registry`: a backbone
family or head type registers itself with a decorator on its module, a network class under the
head type it is built for, a preset from its family's module in :mod:`mixformer.models.presets`
(:func:`mixformer.models.config.register_preset`). The model finds its parts through its
config's ``family`` / ``type`` name, so adding a family means new files, not edits of the model.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from mixformer.models.config import Preset

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection that refuses duplicate names and names the closest one on a miss.

    Args:
        kind: what is registered (used in messages), e.g. ``"backbone"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a second ``name`` raises ``ValueError``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name raises ``KeyError`` naming the closest one."""
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} (available: {', '.join(self)})")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self):  # noqa: ANN204 - iterator of names
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs sorted by name."""
        return sorted(self._items.items())


BACKBONES: Registry[type] = Registry("backbone family")
"""Backbone families: name -> ``nn.Module`` class with a ``Config`` dataclass attribute."""

HEADS: Registry[type] = Registry("box head")
"""Box heads: name -> ``nn.Module`` class with a ``Config`` dataclass attribute."""

NETWORKS: Registry[type] = Registry("network")
"""Box-head type -> network class, for heads whose network differs from
:class:`~mixformer.models.mixformer.MixFormer` (MixFormerV2's ``"mlp"``); ``MixFormer(config)``
builds that class."""

PRESETS: Registry[Preset] = Registry("model")
"""Model presets: name -> :class:`~mixformer.models.config.Preset` (use
:func:`~mixformer.models.config.get_config` / ``list_models`` / ``register_preset``)."""
