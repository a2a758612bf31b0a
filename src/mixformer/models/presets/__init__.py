"""The model presets of every family, one module per family (torchvision / timm style).

Each module holds everything the family's presets need besides the network code: the
architecture of each preset (a function registered with
:func:`~mixformer.models.config.register_preset`), the reference's tracker schedules for its
weights (:class:`~mixformer.models.release.TrackingDefaults`) and the released files it loads
(:class:`~mixformer.models.release.Release`). Importing a module registers its presets; this
package imports them all (``mixformer.models`` imports it, and so does
:func:`~mixformer.models.config.get_config`).

===================  ==============================================================
module               presets
===================  ==============================================================
:mod:`.cvt`          mixformer-22k, mixformer-1k, mixformer-large, mixformer-tiny
:mod:`.mbv3`         mixformer-mbv3 (the default model)
:mod:`.vit`          mixvit-b, mixvit-l
:mod:`.convmae`      mixvit-convmae-b, mixvit-convmae-l
:mod:`.mixformerv2`  mixformerv2-b, mixformerv2-s
===================  ==============================================================
"""

from mixformer.models.presets import convmae, cvt, mbv3, mixformerv2, vit  # noqa: F401

__all__ = ["convmae", "cvt", "mbv3", "mixformerv2", "vit"]
