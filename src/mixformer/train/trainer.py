"""The training loop (SPEC 3.6, 3.8): epochs, validation, logging, checkpoints, resume, DDP.

Reproducibility: sample ``i`` of epoch ``e`` is drawn from RNGs seeded by ``(seed, e, i)`` and
the model's own randomness (DropPath) is reseeded from ``(seed, e, rank)`` at the start of each
epoch, so resuming from the checkpoint of epoch ``e`` replays epoch ``e+1`` exactly; a run
killed mid-epoch and resumed ends with the weights of an uninterrupted run.

Checkpoints carry a checksum; on resume a corrupt or unreadable newest checkpoint is reported
and the previous good one is used. ``log.csv`` is rewritten atomically from the history stored
in the checkpoints, so a run killed between checkpoint and log gets its missing rows back on
resume.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mixformer.models import (
    MixFormer,
    MixFormerV2,
)
from mixformer.models.weights import CheckpointError, size_limit
from mixformer.train.checkpoint import (
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    save_slim,
)
from mixformer.train.config import TrainConfig
from mixformer.train.distill import (
    DistillWeights,
    copy_from_teacher,
    distill_losses,
    teacher_targets,
    v2_forward,
)
from mixformer.train.distributed import DistInfo, all_mean, any_flag
from mixformer.train.losses import stage_loss
from mixformer.train.network import build_network, build_teacher
from mixformer.train.optim import build_optimizer, build_scheduler
from mixformer.train.removal import block_rates, remove_rate, shallow_student
from mixformer.train.samples import build_loader, build_samples
from mixformer.utils import atomic_write_text, remove_stale_tmp

log = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "Trainer"]

CSV_FIELDS = (
    "epoch",
    "split",
    "samples",
    "loss",
    "ciou",
    "l1",
    "iou",
    "bce",
    "acc",
    "grad_norm",
    "lr",
    "seconds",
    "samples_per_s",
)
DISTILL_FIELDS = ("kl", "feat", "iou_teacher", "remove_rate")
"""Extra ``log.csv`` columns of a distillation run."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the bad update."""


class _V2Student(torch.nn.Module):
    """The student's distillation forward (:func:`~mixformer.train.distill.v2_forward`) as a
    module, so that DDP wraps it and synchronises its gradients."""

    def __init__(self, student: MixFormerV2) -> None:
        super().__init__()
        self.student = student

    def forward(
        self,
        template: torch.Tensor,
        online_template: torch.Tensor,
        search: torch.Tensor,
        rates: list[float],
        feature_layers: tuple[int, ...],
    ) -> dict[str, Any]:
        return v2_forward(self.student, template, online_template, search, rates, feature_layers)


def _floats(out: Any) -> Any:
    """Every tensor of a (nested) output in float32 (after autocast)."""
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, dict):
        return {k: _floats(v) for k, v in out.items()}
    return out


@dataclass
class _Meter:
    """Weighted means; keys added with ``key_count=False`` are averaged over their own calls."""

    sums: dict[str, float]
    count: int = 0

    def __post_init__(self) -> None:
        self.own: dict[str, int] = {}

    def add(self, stats: dict[str, float], n: int, key_count: bool = True) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
            if not key_count:
                self.own[k] = self.own.get(k, 0) + n
        if key_count:
            self.count += n

    def mean(self) -> dict[str, float]:
        return {k: v / max(self.own.get(k, self.count), 1) for k, v in self.sums.items()}


class Trainer:
    """Runs one training stage into a run folder.

    Args:
        cfg: the training configuration.
        run_dir: output folder (checkpoints, ``log.csv``, TensorBoard events, final weights).
        resume: continue from the newest good checkpoint of ``run_dir`` (a fresh start if
            none); a corrupt newer one is skipped with a warning.
        info: the DDP position of this process (default: single process on the CPU / GPU 0).
        progress: show the tqdm progress bar (rank 0 only).
        name: run name recorded in the checkpoint.

    Raises:
        ValueError: ``run_dir`` already holds checkpoints and ``resume`` is False.
        CheckpointError: ``resume`` and none of the checkpoints is readable (names the newest).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        resume: bool = False,
        info: DistInfo | None = None,
        progress: bool = True,
        name: str = "",
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.info = info or DistInfo(
            device=torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.progress = progress
        self.name = name
        self.history: list[dict[str, Any]] = []
        self._log_prefix: list[dict[str, str]] = []
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        existing = list_checkpoints(self.run_dir)
        if existing and not resume:
            raise ValueError(
                f"{self.run_dir} already holds checkpoints (last: {existing[-1][1].name}); "
                "pass --resume to continue, or choose another output folder"
            )
        self.use_amp = cfg.amp and self.info.device.type == "cuda"
        if cfg.amp and not self.use_amp:
            log.warning("amp=true ignored: mixed precision is used on CUDA only")
        cfg = self.cfg = cfg.with_model_crops()  # crop sizes 0 in the config mean the model's
        self.model = build_network(cfg).to(self.info.device)
        self.teacher: MixFormer | None = None
        self.rho = 1.0  # residual weight of the removed blocks in the current epoch
        if cfg.distill:
            if not isinstance(self.model, MixFormerV2):
                raise ValueError(
                    f"distillation trains a MixFormerV2 student; {cfg.model} is a "
                    f"{self.model.config.family} network"
                )
            depth = len(self.model.backbone.blocks)
            block_rates(depth, cfg.remove_layers if cfg.distill == "remove" else (), 1.0)
            bad = [i for i in cfg.distill_layers_student if not 0 <= i < depth]
            if bad:
                raise ValueError(
                    f"distill_layers_student {bad} outside the student's {depth} blocks"
                )
            self.teacher = build_teacher(cfg, self.model).to(self.info.device)
            if cfg.init_from_teacher:
                copied = copy_from_teacher(self.model, self.teacher)
                if not copied:
                    raise ValueError(
                        "init_from_teacher: the student shares no tensor with the "
                        "teacher (other names or shapes)"
                    )
                log.info("student starts from %d teacher tensors", len(copied))
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.start_epoch = 0
        if self.info.is_main:
            remove_stale_tmp(self.run_dir)  # left by a run killed inside an atomic write
        if resume and existing:
            self._resume(existing)
        self.net: torch.nn.Module = _V2Student(self.model) if cfg.distill else self.model
        if self.info.distributed:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            self.net = DistributedDataParallel(
                self.net, device_ids=ids, find_unused_parameters=True
            )
        self.train_samples = build_samples(cfg, train=True)
        self.val_samples = build_samples(cfg, train=False) if cfg.val_datasets else None
        self._tb = None
        self.global_step = self.start_epoch * self.steps_per_epoch

    # -- bookkeeping ---------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (incomplete global batches are dropped)."""
        g = self.cfg.batch_size * self.info.world_size * self.cfg.accum_iter
        return self.cfg.samples_per_epoch // g

    def _resume(self, existing: list[tuple[int, Path]]) -> None:
        """Load the newest checkpoint that reads, verifies and fits this run (its network and
        optimizer: a checkpoint written before the config changed does not); warn about each
        one skipped."""
        limit = size_limit(self.model)
        bad: list[str] = []
        newest_first = list(reversed(existing))
        for k, (_, path) in enumerate(newest_first):
            try:
                ckpt = load_checkpoint(path, max_bytes=limit)
                misfit = self._misfit(path, ckpt)
                if misfit is not None:
                    raise CheckpointError(misfit)
                try:
                    self._load(path, ckpt)
                except (RuntimeError, ValueError, KeyError, TypeError) as exc:
                    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    raise CheckpointError(f"{path}: cannot load it into this run ({msg})") from exc
            except CheckpointError as exc:
                bad.append(str(exc))
                if k + 1 < len(newest_first):  # the last one's failure is the error below
                    log.warning("%s; falling back to the previous checkpoint", exc)
                continue
            if self.info.is_main:
                self._rebuild_log()
            return
        older = f" (and {len(bad) - 1} older unusable checkpoint(s))" if len(bad) > 1 else ""
        raise CheckpointError(f"cannot resume, no good checkpoint left: {bad[0]}{older}")

    def _misfit(self, path: Path, ckpt: dict[str, Any]) -> str | None:
        """Why ``ckpt`` cannot continue this run (another stage, network shape or optimizer
        layout), in one line naming ``path``; None when it fits."""
        stage = ckpt.get("train_config", {}).get("stage", self.cfg.stage)
        if stage != self.cfg.stage:
            return f"{path}: a checkpoint of stage {stage}, this run is stage {self.cfg.stage}"
        distill = ckpt.get("train_config", {}).get("distill", "")
        if distill != self.cfg.distill:
            return (
                f"{path}: a checkpoint of distill={distill!r}, this run is "
                f"distill={self.cfg.distill!r}"
            )
        missing_keys = [
            k for k in ("net", "optimizer", "scheduler", "rng", "epoch") if k not in ckpt
        ]
        if missing_keys or not isinstance(ckpt["net"], dict):
            return f"{path}: not a training checkpoint (no {(missing_keys or ['net'])[0]!r})"
        net, own = ckpt["net"], self.model.state_dict()
        differ = [
            k
            for k in own
            if k in net and tuple(getattr(net[k], "shape", ())) != tuple(own[k].shape)
        ]
        missing = [k for k in own if k not in net]
        extra = [k for k in net if k not in own]
        if differ or missing or extra:
            parts = []
            if differ:
                k = differ[0]
                more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
                parts.append(
                    f"{k} is {tuple(net[k].shape)} there, {tuple(own[k].shape)} here{more}"
                )
            if missing:
                parts.append(f"{len(missing)} tensors missing (first {missing[0]})")
            if extra:
                parts.append(f"{len(extra)} unknown tensors (first {extra[0]})")
            return (
                f"{path}: does not fit this run's network ({'; '.join(parts)}); was the model "
                "config changed?"
            )
        groups = (
            ckpt["optimizer"].get("param_groups", []) if isinstance(ckpt["optimizer"], dict) else []
        )
        sizes = [len(g.get("params", [])) for g in groups]
        own_sizes = [len(g["params"]) for g in self.optimizer.param_groups]
        if sizes != own_sizes:
            return (
                f"{path}: its optimizer holds {sum(sizes)} parameters in {len(sizes)} groups, "
                f"this run trains {sum(own_sizes)} in {len(own_sizes)}; was the config changed?"
            )
        return None

    def _load(self, path: Path, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["net"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scheduler.step_size != self.cfg.lr_drop_epoch:  # the config wins on resume
            log.info("lr_drop_epoch changed on resume: %d", self.cfg.lr_drop_epoch)
            self.scheduler.step_size = self.cfg.lr_drop_epoch
        restore_rng(ckpt["rng"])
        self.start_epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history", []))
        log.info("resumed from %s (epoch %d)", path, self.start_epoch)

    def _checkpoint(self, epoch: int) -> dict[str, Any]:
        return {
            "net": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "preset": self.cfg.model,
            "net_type": "MixFormer" if self.cfg.stage == 1 else "MixFormerOnlineScore",
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng(),
            "train_config": self.cfg.to_dict(),
            "run_name": self.name,
            "history": self.history,
        }

    def _save(self, epoch: int) -> Path:
        path = checkpoint_path(self.run_dir, epoch)
        save_checkpoint(self._checkpoint(epoch), path)
        keep = self.cfg.keep_checkpoints
        if keep > 0:
            for _, old in list_checkpoints(self.run_dir)[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def _converted(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """``ckpt`` with the removed blocks dropped (:func:`shallow_student`); warns when their
        weight was not yet 0 (the phase-out longer than the run)."""
        rho = remove_rate(int(ckpt["epoch"]), self.cfg.phase_out_epochs)
        if rho > 0:
            log.warning(
                "the removed blocks still had weight %.4f in the last epoch (phase_out_epochs "
                "%d > epochs): the converted student differs from the trained one",
                rho,
                self.cfg.phase_out_epochs,
            )
        deep = MixFormer(self.model.config, self.cfg.model).to(self.info.device)
        deep.load_state_dict(ckpt["net"])
        shallow = shallow_student(deep, self.cfg.remove_layers)  # type: ignore[arg-type]
        out = dict(ckpt)
        out["net"] = {k: v.cpu() for k, v in shallow.state_dict().items()}
        out["model_config"] = shallow.config.to_dict()
        return out

    def _rebuild_log(self) -> None:
        """After a resume: ``log.csv`` = the resumed checkpoint's history.

        Restores rows lost when a run was killed between checkpoint and log. A checkpoint
        without history (not written by this trainer) keeps the log's rows up to its epoch.
        """
        path = self.run_dir / "log.csv"
        if not self.history and path.is_file():
            with path.open(newline="") as f:
                self._log_prefix = [
                    r
                    for r in csv.DictReader(f)
                    if str(r.get("epoch", "")).isdigit() and int(r["epoch"]) <= self.start_epoch
                ]
        self._write_log()

    def _write_log(self) -> None:
        """Write ``log.csv`` atomically: one row per epoch and split of the history."""
        path = self.run_dir / "log.csv"
        fields = list(CSV_FIELDS) + (list(DISTILL_FIELDS) if self.cfg.distill else [])
        if path.is_file():
            with path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if header and header != fields:  # written by another version: keep its columns
                fields = header
        if not self.history and not self._log_prefix:
            return
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for row in [*self._log_prefix, *self.history]:
            w.writerow({k: row.get(k, "") for k in fields})
        atomic_write_text(path, buf.getvalue())

    def _tensorboard(self) -> Any:
        if self._tb is None and self.cfg.tensorboard and self.info.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed; logging to log.csv only")
                self._tb = False
            else:
                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._tb or None

    # -- steps ---------------------------------------------------------------------------
    def _distill_forward(
        self, t: torch.Tensor, s: torch.Tensor, anno: torch.Tensor, ctx: Any
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Student (through ``self.net``) and teacher forward, distillation losses."""
        cfg = self.cfg
        assert self.teacher is not None
        removed = cfg.remove_layers if cfg.distill == "remove" else ()
        rates = block_rates(len(self.model.backbone.blocks), removed, self.rho)
        with ctx:
            s_out = self.net(t[:, 0], t[:, 1], s, rates, cfg.distill_layers_student)
            t_out = teacher_targets(self.teacher, t[:, 0], t[:, 1], s, cfg.distill_layers_teacher)
        weights = DistillWeights(cfg.iou_weight, cfg.l1_weight, cfg.kl_weight, cfg.feat_weight)
        loss, terms = distill_losses(_floats(s_out), _floats(t_out), anno, weights)
        stats = {
            "loss": float(loss.detach()),
            "ciou": float(terms["ciou"].detach()),
            "l1": float(terms["l1"].detach()),
            "iou": float(terms["iou"].mean()),
            "iou_teacher": float(terms["iou_teacher"].mean()),
            "kl": float(terms["kl"].detach()),
            "remove_rate": float(self.rho),
        }
        if "feat" in terms:
            stats["feat"] = float(terms["feat"].detach())
        return loss, stats

    def _forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        dev = self.info.device
        t = batch["template_images"].to(dev, non_blocking=True)
        s = batch["search_images"][:, 0].to(dev, non_blocking=True)
        anno = batch["search_anno"][:, 0].to(dev)
        label = batch["label"][:, 0].to(dev) if "label" in batch else None
        stage2 = self.cfg.stage == 2
        gt = None
        if stage2:
            x, y, w, h = anno.unbind(-1)
            gt = torch.stack([x, y, x + w, y + h], dim=-1)
        ctx = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.use_amp
            else contextlib.nullcontext()
        )
        if self.cfg.distill:
            try:
                return self._distill_forward(t, s, anno, ctx)
            except ValueError as exc:  # NaN boxes: stop as on a non-finite loss
                if "NaN" not in str(exc):
                    raise
                return torch.tensor(float("nan")), {"loss": float("nan")}
        with ctx:
            out = self.net(t[:, 0], t[:, 1], s, run_score_head=stage2, gt_bboxes=gt)
        out = {k: v.float() for k, v in out.items()}
        weights = (self.cfg.iou_weight, self.cfg.l1_weight, self.cfg.score_weight)
        return stage_loss(self.cfg.stage, out, anno, label, weights)

    def set_epoch_rate(self, epoch: int) -> None:
        """The removed blocks' weight ``rho(epoch)`` (1.0 outside a ``remove`` run); training
        and validation of the epoch use it (quirk 8.1)."""
        if self.cfg.distill == "remove":
            self.rho = remove_rate(epoch, self.cfg.phase_out_epochs)
        else:
            self.rho = 1.0

    def _seed_epoch(self, epoch: int) -> None:
        seq = np.random.SeedSequence([self.cfg.seed, epoch, self.info.rank, 7])
        torch.manual_seed(int(seq.generate_state(1)[0]))

    def train_epoch(self, epoch: int, stop_at_step: int | None = None) -> dict[str, float] | None:
        """One training epoch; returns the batch-weighted mean statistics over all ranks.

        Args:
            epoch: 1-based epoch number.
            stop_at_step: return None once the global step count reaches this value
                (simulates an interruption; used by tests).
        Raises:
            NonFiniteLossError: NaN/inf loss (no update is applied for that batch).
        """
        cfg, info = self.cfg, self.info
        self._seed_epoch(epoch)
        self.set_epoch_rate(epoch)
        self.train_samples.set_epoch(epoch)
        self.model.train()
        loader = build_loader(self.train_samples, cfg, info, cfg.accum_iter)
        meter = _Meter({})
        steps = self.steps_per_epoch
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="step",
            disable=not (self.progress and info.is_main),
            dynamic_ncols=True,
        )
        t0 = time.perf_counter()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        step = 0
        for m, batch in enumerate(loader):
            j = m % cfg.accum_iter
            last = j == cfg.accum_iter - 1
            sync = self.net.no_sync() if info.distributed and not last else contextlib.nullcontext()
            with sync:
                loss, stats = self._forward(batch)
                if any_flag(not math.isfinite(stats["loss"]), info):
                    good = latest_checkpoint(self.run_dir)
                    raise NonFiniteLossError(
                        f"non-finite loss ({stats['loss']}) at epoch {epoch}, step {step + 1} "
                        f"(batch {m + 1} of the epoch, global step {self.global_step + 1}); "
                        f"last good checkpoint: {good or 'none'}"
                    )
                self.scaler.scale(loss / cfg.accum_iter).backward()
            meter.add(stats, batch["search_images"].shape[0])
            if not last:
                continue
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            meter.add({"grad_norm": float(grad_norm)}, 1, key_count=False)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            step += 1
            self.global_step += 1
            elapsed = time.perf_counter() - t0
            rate = step * cfg.batch_size * cfg.accum_iter * info.world_size / elapsed
            bar.update(1)
            if step % cfg.log_every == 0 or step == steps:
                bar.set_postfix(loss=f"{meter.mean()['loss']:.4f}", sps=f"{rate:.2f}")
                tb = self._tensorboard()
                if tb is not None:
                    for k, v in stats.items():
                        tb.add_scalar(f"train_step/{k}", v, self.global_step)
            if stop_at_step is not None and self.global_step >= stop_at_step:
                bar.close()
                return None
        bar.close()
        dt = time.perf_counter() - t0
        out = all_mean(meter.mean(), info)
        out["samples"] = float(meter.count * info.world_size)
        out["seconds"] = dt
        out["samples_per_s"] = out["samples"] / dt if dt > 0 else 0.0
        return out

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss, IoU (and score accuracy in stage 2) on the validation samples (eval mode)."""
        assert self.val_samples is not None
        self.model.eval()
        self.val_samples.set_epoch(0)
        loader = build_loader(self.val_samples, self.cfg, self.info, 1)
        meter = _Meter({})
        t0 = time.perf_counter()
        for batch in tqdm(
            loader,
            desc="validation",
            unit="batch",
            leave=False,
            disable=not (self.progress and self.info.is_main),
        ):
            _, stats = self._forward(batch)
            meter.add(stats, batch["search_images"].shape[0])
        self.model.train()
        out = all_mean(meter.mean(), self.info)
        out["samples"] = float(meter.count * self.info.world_size)
        out["seconds"] = time.perf_counter() - t0
        return out

    def fit(self, stop_at_step: int | None = None) -> Path | None:
        """Train from ``start_epoch + 1`` to ``cfg.epochs``.

        Args:
            stop_at_step: stop without saving once this global optimizer step is done
                (simulates a crash, for tests).
        Returns:
            The slim final weights ``<run_dir>/model_final.pth`` (rank 0), or None when
            stopped early or on other ranks.
        """
        cfg, info = self.cfg, self.info
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            log.info(
                "stage %d of %s: epochs %d-%d, %d steps/epoch, batch %d x %d proc x %d accum",
                cfg.stage,
                cfg.model,
                self.start_epoch + 1,
                cfg.epochs,
                self.steps_per_epoch,
                cfg.batch_size,
                info.world_size,
                cfg.accum_iter,
            )
        for epoch in range(self.start_epoch + 1, cfg.epochs + 1):
            train = self.train_epoch(epoch, stop_at_step)
            if train is None:
                return None
            lr = self.optimizer.param_groups[0]["lr"]
            rows = [{"epoch": epoch, "split": "train", "lr": lr, **train}]
            if self.val_samples is not None and epoch % cfg.val_every == 0:
                rows.append({"epoch": epoch, "split": "val", "lr": lr, **self.validate()})
            self.scheduler.step()
            self.history.extend(rows)
            if info.is_main:
                path = self._save(epoch)
                self._write_log()  # after the checkpoint: a resume rebuilds it from there
                tb = self._tensorboard()
                for row in rows:
                    msg = ", ".join(f"{k} {row[k]:.4f}" for k in ("loss", "iou", "acc") if k in row)
                    log.info("epoch %d %s: %s", epoch, row["split"], msg)
                    if tb is not None:
                        for k, v in row.items():
                            if isinstance(v, float) and k not in ("epoch",):
                                tb.add_scalar(f"{row['split']}/{k}", v, epoch)
                log.info("saved %s", path)
        if not info.is_main:
            return None
        last = latest_checkpoint(self.run_dir)
        if last is None:
            return None
        ckpt = load_checkpoint(last)
        if cfg.distill == "remove":  # the phased-out student, converted to the shallower one
            ckpt = self._converted(ckpt)
        final = save_slim(ckpt, self.run_dir / "model_final.pth")
        if self._tb:
            self._tb.close()
        return final
