"""Per-frame search crop and normalisation into a reused buffer (the fast tracker's input path)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mixformer.geometry import IMAGENET_MEAN, IMAGENET_STD, sample_target


class SearchCropper:
    """Crop, resize and normalise the search region into one preallocated tensor.

    The arithmetic is that of :func:`mixformer.geometry.normalize_patch` (``u8 / 255``, minus
    mean, divided by std, float32), done in place, so the values are bit-identical; only the
    allocations and the HWC -> CHW copy are saved. The result is a channels-last view, the
    layout the fast path's first convolution wants.

    The returned tensor is overwritten by the next call: use it before cropping again (the
    tracker hands it straight to the network). Template crops must not use this class.

    Args:
        size: output side ``S`` in pixels (320 for the search region).
        device: torch device of the output.
    """

    def __init__(self, size: int, device: torch.device | str = "cpu") -> None:
        self.size = size
        self._hwc = torch.empty(1, size, size, 3, dtype=torch.float32, device=device)
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).reshape(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).reshape(1, 3, 1, 1)

    def __call__(
        self, image: np.ndarray, box: Sequence[float], factor: float
    ) -> tuple[torch.Tensor, float]:
        """Crop around ``box`` (x, y, w, h pixels) with ``factor``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
        Returns:
            ``(x (1, 3, S, S) float32 normalised, channels-last view of the buffer,
            resize_factor)``.
        """
        patch, rf = sample_target(image, box, factor, self.size)
        self._hwc[0].copy_(torch.from_numpy(np.ascontiguousarray(patch)))
        x = self._hwc.permute(0, 3, 1, 2)
        x.div_(255.0).sub_(self._mean).div_(self._std)
        return x, rf
