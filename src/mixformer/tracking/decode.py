"""From the network's output to image boxes, and the tracker settings a model runs with."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mixformer.geometry import Box, clip_box, crop_size, map_box_back
from mixformer.models.mixformer import MixFormer
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.results import Window

__all__ = ["crop_window", "decode_prediction", "reference_config", "resolve_config"]


def reference_config(model: MixFormer) -> TrackerConfig:
    """The reference tracker's defaults (no motion settings) with the model's crop sizes.

    What the measurement helpers (benchmark, precision study) run by default, so that their
    figures stay comparable across models; :func:`resolve_config` gives trackers the model's
    own preset instead.
    """
    mc = model.config
    return TrackerConfig(template_size=mc.template_size, search_size=mc.search_size)


def resolve_config(model: MixFormer, config: TrackerConfig | None) -> TrackerConfig:
    """``config``, or when None the model's own default settings.

    The default is ``TrackerConfig.for_model(model)``: the ``"default"`` preset of the model's
    preset name (its tuned settings, e.g. ``mixformer-tiny``'s motion prior, the same the CLI
    uses) with the network's crop sizes.

    Raises:
        ValueError: the crop sizes are not the ones the model was built for.
    """
    mc = model.config
    if config is None:
        return TrackerConfig.for_model(model)
    if (mc.template_size, mc.search_size) != (config.template_size, config.search_size):
        raise ValueError(
            f"tracker crop sizes {config.template_size}/{config.search_size} do not "
            f"match the model's {mc.template_size}/{mc.search_size}"
        )
    return config


def crop_window(box: Sequence[float], factor: float) -> Window:
    """The square window :func:`~mixformer.geometry.sample_target` cuts around ``box``.

    Args:
        box: ``(x, y, w, h)`` in image pixels.
        factor: crop side relative to ``sqrt(w * h)``.
    Returns:
        ``(x, y, side, side)`` in image pixels (the same rounding as the crop).
    """
    x, y, w, h = (float(v) for v in box)
    side = crop_size(box, factor)
    return (
        float(int(round(x + 0.5 * w - side * 0.5))),
        float(int(round(y + 0.5 * h - side * 0.5))),
        float(side),
        float(side),
    )


def decode_prediction(
    out: dict[str, torch.Tensor],
    index: int,
    prev: Box,
    rf: float,
    config: TrackerConfig,
    size: tuple[int, int],
) -> tuple[Box, float | None]:
    """Turn one batch row of the network output into the new image box (SPEC 2.6 steps 4-7).

    Args:
        out: output of :meth:`MixFormer.track`: ``pred_boxes (B, 1, 4)`` normalised cxcywh in
            the search crop, optional ``pred_scores (B,)`` logits.
        index: the batch row to decode.
        prev: the target's previous box ``(x, y, w, h)`` in pixels (the crop's anchor).
        rf: resize factor of that row's search crop.
        config: tracker settings (search size).
        size: image ``(height, width)``.
    Returns:
        ``(box, score)``: the clipped ``(x, y, w, h)`` box in pixels and the sigmoid score in
        ``[0, 1]`` (None when the model has no score head).
    """
    with torch.inference_mode():
        rows = out["pred_boxes"][index].detach().reshape(-1, 4)
        if rows.shape[0] == 1 and rows.device.type == "cpu" and rows.dtype == torch.float32:
            # one box on the CPU (every head but the corner head with several queries): numpy's
            # float32 arithmetic, the same values as torch's, without torch's per-op overhead
            box = rows.numpy()[0]
        else:
            box = rows.mean(0).float().cpu().numpy()
        pred = (box * config.search_size / rf).tolist()
        scores = out.get("pred_scores")
        score = (
            float(torch.sigmoid(scores[index].float()).reshape(-1)[0])
            if scores is not None
            else None
        )
    mapped = map_box_back(pred, prev, config.search_size, rf)
    return clip_box(mapped, size[0], size[1], margin=10), score
