"""Training-sample drawing (SPEC 3.4): ``causal`` (stage 1) and ``trident_pro`` (stage 2).

Every sample is a pure function of ``(seed, epoch, index)``: :class:`TrainingSamples` seeds a
fresh :class:`SampleRNG` per sample, so the data does not depend on the number of processes or
workers, and a resumed run sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mixformer.datagen.training.datasets import CorruptImageError, TrainDataset
from mixformer.datagen.training.processing import InvalidSample, Processing
from mixformer.geometry import iou

log = logging.getLogger(__name__)

__all__ = ["SampleRNG", "TrackingSampler", "TrainingSamples"]

NUM_TEMPLATES = 2
NUM_SEARCH = 1
MIN_VISIBLE = 2 * (NUM_TEMPLATES + NUM_SEARCH)
MIN_LENGTH = 20


@dataclass
class SampleRNG:
    """The three random generators a sample uses: Python (choices, flips), NumPy (brightness),
    torch (box jitter)."""

    py: random.Random
    np: np.random.RandomState
    torch: torch.Generator

    @classmethod
    def from_key(cls, *key: int) -> SampleRNG:
        """Independent generators seeded from an integer tuple such as ``(seed, epoch, index)``."""
        s = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(3)
        g = torch.Generator()
        g.manual_seed(int(s[2]))
        return cls(random.Random(int(s[0])), np.random.RandomState(int(s[1])), g)


class TrackingSampler:
    """Draw (two templates, one search) samples from a mix of datasets and process them.

    Args:
        datasets: the training datasets.
        ratio: relative probability of each dataset.
        processing: the crop / augmentation pipeline.
        mode: ``"causal"`` (stage 1) or ``"trident_pro"`` (stage 2, adds ``label``).
        max_gap: frame gap for sampling (200 in the reference).
        pos_prob: probability of a positive sample in ``trident_pro`` mode.
        max_tries: attempts per sample before giving up with an error.
        hard_negative_prob: ``trident_pro``: probability that a negative is a *hard* one from
            the same sequence (ours, 0 = the reference's negatives): the search box sits on a
            look-alike distractor of that frame when the dataset knows one
            (:meth:`TrainDataset.distractor_boxes`), else on background of the target's size
            next to the target. This is what the tracker meets when it has lost the target.
    """

    def __init__(
        self,
        datasets: list[TrainDataset],
        ratio: list[float] | tuple[float, ...],
        processing: Processing,
        mode: str = "causal",
        max_gap: int = 200,
        pos_prob: float = 0.5,
        max_tries: int = 200,
        hard_negative_prob: float = 0.0,
    ) -> None:
        if not datasets:
            raise ValueError("no training datasets")
        if mode not in ("causal", "trident_pro"):
            raise ValueError(f"sampler mode must be 'causal' or 'trident_pro', got {mode!r}")
        self.datasets = datasets
        self.ratio = list(ratio)
        self.processing = processing
        self.mode = mode
        self.max_gap = max_gap
        self.pos_prob = pos_prob
        self.max_tries = max_tries
        self.hard_negative_prob = hard_negative_prob
        self.corrupt_images = 0
        self._warned = False

    # -- frame-id helpers ---------------------------------------------------------------
    @staticmethod
    def _ids(
        rng: SampleRNG, visible: np.ndarray, lo: int, hi: int, need_visible: bool = True
    ) -> int | None:
        """One id drawn uniformly from ``[max(lo, 0), min(hi, T))`` (visible ids only)."""
        lo, hi = max(lo, 0), min(hi, len(visible))
        if hi <= lo:
            return None
        cand = np.arange(lo, hi)
        if need_visible:
            cand = cand[visible[lo:hi]]
        if len(cand) == 0:
            return None
        return int(rng.py.choices(cand.tolist(), k=1)[0])

    def _pick_sequence(self, rng: SampleRNG) -> tuple[TrainDataset, int, np.ndarray, np.ndarray]:
        ds = rng.py.choices(self.datasets, weights=self.ratio, k=1)[0]
        for _ in range(1000):
            index = rng.py.randint(0, len(ds) - 1)
            boxes, visible = ds.annotation(index)
            if not ds.is_video:
                return ds, index, boxes, visible
            if visible.sum() > MIN_VISIBLE and len(visible) >= MIN_LENGTH:
                return ds, index, boxes, visible
        raise ValueError(
            f"{ds.name}: no sequence with more than {MIN_VISIBLE} visible frames and "
            f"{MIN_LENGTH}+ frames found in 1000 draws"
        )

    def _causal_ids(self, rng: SampleRNG, visible: np.ndarray) -> tuple[list[int], list[int]]:
        gap_increase = 0
        n = len(visible)
        for _ in range(1000):
            base = self._ids(rng, visible, 1, n - 1)
            if base is None:
                break
            prev = self._ids(rng, visible, base - self.max_gap - gap_increase, base)
            if prev is None:
                gap_increase += 5
                continue
            search = self._ids(rng, visible, base + 1, base + self.max_gap + gap_increase)
            if search is None:
                gap_increase += 5
                continue
            return [base, prev], [search]
        raise InvalidSample("no causal frame triple in this sequence")

    def _trident_ids(self, rng: SampleRNG, visible: np.ndarray) -> tuple[list[int], int]:
        n = len(visible)
        for _ in range(1000):
            t1 = self._ids(rng, visible, 0, n)
            s = self._ids(rng, visible, 0, n)
            if t1 is None or s is None:
                break
            lo, hi = (s, s + self.max_gap) if t1 >= s else (s - self.max_gap, s)
            extra = self._ids(rng, visible, lo, hi, need_visible=False)
            if extra is not None:
                return [t1, extra], s
        raise InvalidSample("no trident frame triple in this sequence")

    # -- drawing -------------------------------------------------------------------------
    def _draw(self, rng: SampleRNG) -> dict[str, torch.Tensor]:
        ds, index, boxes, visible = self._pick_sequence(rng)
        if self.mode == "causal":
            if ds.is_video:
                t_ids, s_ids = self._causal_ids(rng, visible)
            else:
                t_ids, s_ids = [0] * NUM_TEMPLATES, [0] * NUM_SEARCH
            frames = ds.frames(index, t_ids + s_ids)
            return self.processing(
                frames[:NUM_TEMPLATES],
                [boxes[i] for i in t_ids],
                frames[NUM_TEMPLATES:],
                [boxes[i] for i in s_ids],
                rng,
            )
        if ds.is_video:
            t_ids, s = self._trident_ids(rng, visible)
        else:
            t_ids, s = [0] * NUM_TEMPLATES, 0
        t_frames = ds.frames(index, t_ids)
        t_boxes = [boxes[i] for i in t_ids]
        if rng.py.random() < self.pos_prob:
            label = 1.0
            s_frame, s_box = ds.frames(index, [s])[0], boxes[s]
        else:
            label = 0.0
            hidden = np.flatnonzero(~visible) if ds.is_video else np.zeros(0, dtype=np.int64)
            hard = self.hard_negative_prob > 0 and rng.py.random() < self.hard_negative_prob
            if hard:
                s_frame = ds.frames(index, [s])[0]
                s_box = self._hard_negative_box(rng, ds, index, s, boxes[s], s_frame.shape[:2])
            elif len(hidden):
                i = int(rng.py.choices(hidden.tolist(), k=1)[0])
                s_frame = ds.frames(index, [i])[0]
                h, w = t_frames[0].shape[:2]
                s_box = np.array(
                    [int(w / 2 - w / 16), int(h / 2 - h / 16), int(w / 8), int(h / 8)], float
                )
            else:
                ds2, index2, boxes2, visible2 = self._pick_sequence(rng)
                i = self._ids(rng, visible2, 0, len(visible2), need_visible=False) or 0
                s_frame, s_box = ds2.frames(index2, [i])[0], boxes2[i]
        out = self.processing(t_frames, t_boxes, [s_frame], [s_box], rng)
        out["label"] = torch.tensor([label], dtype=torch.float32)
        return out

    @staticmethod
    def _hard_negative_box(
        rng: SampleRNG,
        ds: TrainDataset,
        index: int,
        frame: int,
        target: np.ndarray,
        size: tuple[int, int],
    ) -> np.ndarray:
        """A box in ``frame`` that is not the target: a distractor inside the image, else a
        target-sized patch of background beside the target (IoU with the target < 0.1)."""
        H, W = size
        x, y, w, h = (float(v) for v in target)
        cands = [
            b
            for b in ds.distractor_boxes(index, frame)
            if b[2] > 2
            and b[3] > 2
            and b[0] > 0
            and b[1] > 0
            and b[0] + b[2] < W
            and b[1] + b[3] < H
            and iou(b[None], target[None])[0] < 0.3
        ]
        if cands:
            return np.asarray(cands[rng.py.randrange(len(cands))], dtype=np.float64)
        for _ in range(20):
            ang = rng.py.uniform(0, 2 * np.pi)
            dist = rng.py.uniform(1.0, 2.5) * max(w, h)
            bx = float(np.clip(x + np.cos(ang) * dist, 0, max(W - w, 0)))
            by = float(np.clip(y + np.sin(ang) * dist, 0, max(H - h, 0)))
            box = np.array([bx, by, w, h], dtype=np.float64)
            if iou(box[None], target[None])[0] < 0.1:
                return box
        raise InvalidSample("no background box away from the target")

    def sample(self, rng: SampleRNG) -> dict[str, torch.Tensor]:
        """One processed sample (see :class:`~mixformer.datagen.training.processing.Processing`).

        Invalid draws and unreadable frames are retried; unreadable frames are counted in
        ``corrupt_images`` and reported once with a warning.

        Raises:
            RuntimeError: no valid sample in ``max_tries`` attempts.
        """
        last: Exception | None = None
        for _ in range(self.max_tries):
            try:
                return self._draw(rng)
            except CorruptImageError as exc:
                self.corrupt_images += 1
                if not self._warned:
                    log.warning("skipping unreadable frame (warned once; counted): %s", exc)
                    self._warned = True
                last = exc
            except InvalidSample as exc:
                last = exc
        raise RuntimeError(f"no valid training sample in {self.max_tries} tries (last: {last})")


class TrainingSamples(Dataset):
    """``torch`` Dataset view: item ``i`` of epoch ``e`` is drawn with ``SampleRNG(seed, e, i)``.

    Args:
        sampler: the sample generator.
        num_samples: samples per epoch.
        seed: base seed.
    """

    def __init__(self, sampler: TrackingSampler, num_samples: int, seed: int) -> None:
        self.sampler = sampler
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.sampler.sample(SampleRNG.from_key(self.seed, self.epoch, index))
