"""How hard a composited sequence is: :class:`CompositeConfig` and its named variants.

The variants (:data:`COMPOSITE_VARIANTS`) are the held-out benchmarks ``plain`` and ``hard``,
and the training mixes ``train``, ``train-border`` and ``train-large``;
:func:`mixformer.datagen.composite.make_composite_scene` draws a sequence from one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["COMPOSITE_VARIANTS", "CompositeConfig"]


@dataclass(frozen=True)
class CompositeConfig:
    """How hard a composited sequence is (each field a probability or an amplitude).

    Attributes:
        name: variant name.
        video_prob: probability that the background is a real video (else a photo + camera).
        rect_prob: probability of a rectangular object mask (else irregular).
        size: ``(lo, hi)`` object side ``sqrt(w*h)`` as a fraction of the shorter frame side.
        scale_amp / aspect_amp: amplitude of the log scale / log aspect change over a sequence.
        rotation: amplitude of in-plane rotation in degrees.
        perspective: amplitude of the corner displacement (fraction of the object side).
        speed: typical object speed in object sides per frame.
        camera: amplitude of the camera's pan / zoom / roll.
        abrupt_prob: probability per sequence of abrupt jumps (1-3 of them).
        blur_prob: probability per sequence of motion blur.
        occluder_prob: probability per sequence of occluders crossing the object.
        full_occlusion_prob: probability that an occluder covers the whole object.
        distractor_prob: probability per sequence of look-alike distractors (1-2).
        cutout_prob: probability that the object (and each partial occluder) is a
            photographed object with its real outline (a corpus ``cutout``) instead of a
            random-shaped cut from a photo; used only when the corpus has cut-outs. With a
            cut-out object, half the look-alikes are other cut-outs instead of tinted copies.
        border_prob: probability that frame 0 shows the object cut by an image edge (10-45 %
            of its extent outside, on a random side), its path then running along that edge, as
            objects at the border of a photo are (the boxes stay the whole object's; training
            clips them to the image, as a labeller would).
        illumination: amplitude of the brightness change (gain), abrupt changes when ``hard``.
        jpeg: ``(lo, hi)`` JPEG quality.
        noise: maximum Gaussian noise sigma (grey levels).
    """

    name: str
    video_prob: float = 0.3
    rect_prob: float = 0.35
    size: tuple[float, float] = (0.12, 0.3)
    scale_amp: float = 0.25
    aspect_amp: float = 0.1
    rotation: float = 10.0
    perspective: float = 0.05
    speed: float = 0.06
    camera: float = 0.5
    abrupt_prob: float = 0.0
    blur_prob: float = 0.1
    occluder_prob: float = 0.2
    full_occlusion_prob: float = 0.0
    distractor_prob: float = 0.15
    cutout_prob: float = 0.0
    border_prob: float = 0.0
    illumination: float = 0.1
    jpeg: tuple[int, int] = (75, 95)
    noise: float = 3.0


#: The variants: ``plain`` and ``hard`` held-out benchmarks, ``train`` (covers both and more).
COMPOSITE_VARIANTS: dict[str, CompositeConfig] = {
    "plain": CompositeConfig("plain"),
    "hard": CompositeConfig(
        "hard",
        video_prob=0.5,
        size=(0.1, 0.28),
        scale_amp=0.45,
        aspect_amp=0.25,
        rotation=45.0,
        perspective=0.2,
        speed=0.09,
        camera=1.0,
        abrupt_prob=0.6,
        blur_prob=0.7,
        occluder_prob=0.8,
        full_occlusion_prob=0.6,
        distractor_prob=0.8,
        illumination=0.3,
        jpeg=(35, 85),
        noise=8.0,
    ),
    "train": CompositeConfig(
        "train",
        video_prob=0.4,
        rect_prob=0.5,
        size=(0.08, 0.32),
        scale_amp=0.4,
        aspect_amp=0.2,
        rotation=35.0,
        perspective=0.15,
        speed=0.08,
        camera=0.8,
        abrupt_prob=0.35,
        blur_prob=0.45,
        occluder_prob=0.55,
        full_occlusion_prob=0.35,
        distractor_prob=0.55,
        cutout_prob=0.5,
        illumination=0.25,
        jpeg=(35, 95),
        noise=8.0,
    ),
}
#: ``train`` with a quarter of the objects cut by an image edge in frame 0 (``border_prob``).
COMPOSITE_VARIANTS["train-border"] = dataclasses.replace(
    COMPOSITE_VARIANTS["train"], name="train-border", border_prob=0.25
)
#: ``train`` with objects up to 0.55 of the shorter frame side (``train``: 0.32), so that search
#: crops of large objects, mostly padding outside the frame, are seen in training.
COMPOSITE_VARIANTS["train-large"] = dataclasses.replace(
    COMPOSITE_VARIANTS["train"], name="train-large", size=(0.08, 0.55)
)
