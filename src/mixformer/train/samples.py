"""The training and validation samples of a run and their loaders (SPEC 3.2-3.5)."""

from __future__ import annotations

import time
from dataclasses import fields

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mixformer.datagen.training import (
    Processing,
    ProcessingConfig,
    TrackingSampler,
    TrainingSamples,
    build_dataset,
)
from mixformer.train.config import TrainConfig
from mixformer.train.distributed import DistInfo, epoch_batches

__all__ = ["build_loader", "build_samples", "measure_data"]


def _processing(cfg: TrainConfig, train: bool) -> Processing:
    # TrainConfig carries every ProcessingConfig field under the same name (flat YAML keys).
    pc = ProcessingConfig(**{f.name: getattr(cfg, f.name) for f in fields(ProcessingConfig)})
    return Processing(pc, train=train)


def build_samples(cfg: TrainConfig, train: bool = True) -> TrainingSamples:
    """The per-epoch sample set of the training (or validation) datasets."""
    names = cfg.datasets if train else cfg.val_datasets
    h, w = cfg.synthetic_size
    synth = dict(
        num_sequences=cfg.synthetic_sequences if train else max(64, cfg.val_samples // 4),
        num_frames=cfg.synthetic_frames,
        height=h,
        width=w,
        seed=cfg.synthetic_seed if train else cfg.synthetic_val_seed,
    )
    comp = {**synth, "variant": cfg.composite_variant}
    datasets = [build_dataset(n, cfg.data_roots, synth, comp) for n in names]
    ratio = cfg.ratio if train else [1.0] * len(datasets)
    sampler = TrackingSampler(
        datasets,
        ratio,
        _processing(cfg, train),
        cfg.sampler,
        cfg.max_gap,
        cfg.pos_prob,
        hard_negative_prob=cfg.hard_negative_prob,
    )
    n = cfg.samples_per_epoch if train else cfg.val_samples
    return TrainingSamples(sampler, n, cfg.seed if train else cfg.seed + 1)


def build_loader(
    samples: TrainingSamples, cfg: TrainConfig, info: DistInfo, accum: int
) -> DataLoader:
    """DataLoader over this rank's micro-batches of the current epoch of ``samples``."""
    batches = epoch_batches(len(samples), cfg.batch_size, info.world_size, info.rank, accum)
    return DataLoader(
        samples,
        batch_sampler=batches,
        num_workers=cfg.num_workers,
        pin_memory=info.device.type == "cuda",
    )


def measure_data(
    cfg: TrainConfig, num_batches: int = 10, progress: bool = True
) -> dict[str, float]:
    """Draw ``num_batches`` training batches without a model and time them.

    Returns:
        ``{"samples", "seconds", "samples_per_s", "corrupt_images"}``.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg = cfg.with_model_crops()
    samples = build_samples(cfg, train=True)
    samples.set_epoch(1)
    n = min(num_batches * cfg.batch_size, len(samples))
    loader = DataLoader(
        samples,
        batch_sampler=[
            list(range(i, min(i + cfg.batch_size, n))) for i in range(0, n, cfg.batch_size)
        ],
        num_workers=cfg.num_workers,
    )
    t0 = time.perf_counter()
    count = 0
    for batch in tqdm(loader, desc="data", unit="batch", disable=not progress):
        count += batch["search_images"].shape[0]
    dt = time.perf_counter() - t0
    return {
        "samples": float(count),
        "seconds": dt,
        "samples_per_s": count / dt if dt > 0 else float("inf"),
        "corrupt_images": float(samples.sampler.corrupt_images),
    }
