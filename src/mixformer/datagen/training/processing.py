"""Training-pair processing (SPEC 3.5): joint transform, jitter, crops, per-crop augmentation.

Crops go through :func:`mixformer.geometry.sample_target`, the same function the tracker uses,
so training and inference share one crop geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mixformer.geometry import IMAGENET_MEAN, IMAGENET_STD, sample_target

__all__ = ["Processing", "ProcessingConfig", "InvalidSample"]


class InvalidSample(Exception):
    """The drawn sample cannot be used (empty crop, crop entirely padding); draw again."""


@dataclass(frozen=True)
class ProcessingConfig:
    """Crop geometry and augmentation strengths (defaults: the reference values)."""

    template_factor: float = 2.0
    template_size: int = 128
    search_factor: float = 5.0
    search_size: int = 320
    search_center_jitter: float = 4.5
    search_scale_jitter: float = 0.5
    grayscale_prob: float = 0.05
    brightness_jitter: float = 0.2


_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)


class Processing:
    """Turn raw frames + boxes into normalised crops and crop-relative boxes.

    Args:
        config: geometry and augmentation settings.
        train: True for the training transform (brightness + per-crop flip), False for
            validation (plain ``/255`` and normalisation).
    """

    def __init__(self, config: ProcessingConfig, train: bool = True) -> None:
        self.config = config
        self.train = train

    def __call__(
        self,
        template_frames: list[np.ndarray],
        template_boxes: list[np.ndarray],
        search_frames: list[np.ndarray],
        search_boxes: list[np.ndarray],
        rng: object,
    ) -> dict[str, torch.Tensor]:
        """Process one sample.

        Args:
            template_frames / search_frames: ``(H, W, 3)`` uint8 RGB full frames.
            template_boxes / search_boxes: ``(4,)`` float xywh pixel boxes, one per frame.
            rng: a :class:`~mixformer.datagen.training.sampler.SampleRNG` (``py``, ``np``,
                ``torch`` generators).
        Returns:
            ``template_images (2, 3, 128, 128)``, ``template_anno (2, 4)``,
            ``search_images (1, 3, 320, 320)``, ``search_anno (1, 4)`` (normalised xywh in the
            crop, not clamped), ``template_masks (2, 128, 128)``, ``search_masks (1, 320, 320)``
            (bool, True on padding). Images are float32, ImageNet-normalised.
        Raises:
            InvalidSample: the sample must be redrawn.
        """
        c = self.config
        gray = self.train and rng.py.random() < c.grayscale_prob
        flip = self.train and rng.py.random() < 0.5
        t_frames, t_boxes = self._joint(template_frames, template_boxes, gray, flip)
        s_frames, s_boxes = self._joint(search_frames, search_boxes, gray, flip)
        out: dict[str, torch.Tensor] = {}
        for key, frames, boxes, factor, size, cj, sj in (
            ("template", t_frames, t_boxes, c.template_factor, c.template_size, 0.0, 0.0),
            (
                "search",
                s_frames,
                s_boxes,
                c.search_factor,
                c.search_size,
                c.search_center_jitter,
                c.search_scale_jitter,
            ),
        ):
            imgs, annos, masks = [], [], []
            for frame, box in zip(frames, boxes):
                img, anno, mask = self._crop(frame, box, factor, size, cj, sj, rng)
                imgs.append(img)
                annos.append(anno)
                masks.append(mask)
            out[f"{key}_images"] = torch.stack(imgs)
            out[f"{key}_anno"] = torch.stack(annos)
            out[f"{key}_masks"] = torch.stack(masks)
        return out

    @staticmethod
    def _joint(
        frames: list[np.ndarray], boxes: list[np.ndarray], gray: bool, flip: bool
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Grayscale + horizontal flip of whole frames (one draw for templates and search)."""
        if gray:
            frames = [
                np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
                for f in frames
            ]
        boxes = [np.asarray(b, dtype=np.float64).copy() for b in boxes]
        if flip:
            width = frames[0].shape[1]
            frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
            for b in boxes:
                b[0] = (width - 1) - b[0] - b[2]
        return frames, boxes

    def _crop(
        self,
        frame: np.ndarray,
        box: np.ndarray,
        factor: float,
        size: int,
        center_jitter: float,
        scale_jitter: float,
        rng: object,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        wh = torch.tensor(box[2:4], dtype=torch.float64)
        xy = torch.tensor(box[0:2], dtype=torch.float64)
        js = wh * torch.exp(torch.randn(2, generator=rng.torch, dtype=torch.float64) * scale_jitter)
        m = math.sqrt(float(js[0] * js[1])) * center_jitter
        jc = (xy + wh / 2) + m * (torch.rand(2, generator=rng.torch, dtype=torch.float64) - 0.5)
        area = float(js[0] * js[1])
        if not math.isfinite(area) or area <= 0 or math.ceil(math.sqrt(area) * factor) < 1:
            raise InvalidSample("jittered box gives an empty crop")
        ext = (float(jc[0] - js[0] / 2), float(jc[1] - js[1] / 2), float(js[0]), float(js[1]))
        try:
            patch, rf, mask = sample_target(frame, ext, factor, size, return_mask=True)
        except ValueError as exc:
            raise InvalidSample(str(exc)) from exc
        c_gt = xy + wh / 2
        c_out = (size - 1) / 2 + (c_gt - jc) * rf
        wh_out = wh * rf
        anno = torch.cat([c_out - wh_out / 2, wh_out]).float() / size
        mask_t = torch.from_numpy(mask)
        if self.train:
            beta = rng.np.uniform(
                max(0.0, 1 - self.config.brightness_jitter), 1 + self.config.brightness_jitter
            )
            img = torch.from_numpy(patch).permute(2, 0, 1).float()
            img = (img * np.float32(beta / 255.0)).clamp(0.0, 1.0)
            if rng.py.random() < 0.5:
                img = img.flip(-1)
                mask_t = mask_t.flip(-1)
                anno = torch.stack([1 - anno[0] - anno[2], anno[1], anno[2], anno[3]])
        else:
            img = torch.from_numpy(patch).permute(2, 0, 1).float() / 255.0
        img = (img - _MEAN) / _STD
        if bool(mask_t.all()):
            raise InvalidSample("crop is entirely padding")
        small = F.interpolate(mask_t[None, None].float(), size=size // 16, mode="nearest")
        if bool(small.bool().all()):
            raise InvalidSample("downsampled crop mask is entirely padding")
        return img.contiguous(), anno, mask_t
