"""The training presets of every family, one module per family (as :mod:`mixformer.models.presets`).

Importing a module registers its presets with
:func:`~mixformer.train.config.register_train_preset`; this package imports them all
(:func:`~mixformer.train.config.get_train_config` imports it).

====================  ==========================================================================
module                presets
====================  ==========================================================================
:mod:`.cvt`           mixformer-22k/1k/large/got-stage1/2 (SPEC 3), tiny-synthetic/real-stage1/2
:mod:`.mbv3`          mbv3-real-stage1/2, mbv3-finetune-stage1/2 (the default model)
:mod:`.vit`           mixvit-b/l-stage1/2, -got-stage1/2 (SPEC-MIXVIT 8)
:mod:`.convmae`       mixvit-convmae-b/l-stage1/2, -got-stage1/2
:mod:`.mixformerv2`   mixformerv2-b/s-stage1/2; the distillation recipes mixformerv2-b-distill,
                      mixformerv2-s-distill and mbv3-distill-v2 (four runs each)
:mod:`.common`        schedule fragments the families share (no presets of its own)
====================  ==========================================================================
"""

from mixformer.train.presets import convmae, cvt, mbv3, mixformerv2, vit  # noqa: F401

__all__ = ["convmae", "cvt", "mbv3", "mixformerv2", "vit"]
