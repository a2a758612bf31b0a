"""Distillation inside the Trainer and ``mixformer distill`` (SPEC-DISTILL 1-4): presets, the
removal rate per epoch, frozen removed blocks, the converted shallower student, resume in the
middle of a removal run, a micro end-to-end run where the student moves towards the teacher,
the CLI chain and its errors, DDP with two gloo processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mixformer.cli import main
from mixformer.models import MixFormerV2, build_model, get_config
from mixformer.train import TrainConfig, Trainer, get_train_config, list_train_configs
from mixformer.train.checkpoint import checkpoint_path, load_checkpoint
from mixformer.train.distill import teacher_targets, v2_forward
from mixformer.train.removal import block_rates, kept_blocks, remove_rate

# A micro MixFormerV2 student of the shipped mixformer-tiny teacher (CvT, 10x10 corner map at
# 160): 10 bins, the teacher's 64/160 crops.
MICRO = dict(
    embed_dim=32,
    depth=4,
    num_heads=2,
    mlp_ratio=1.0,
    bins=10,
    template_size=64,
    search_size=160,
    drop_path_rate=0.0,
)
DATA = dict(
    datasets=("synthetic",),
    dataset_ratio=(1.0,),
    val_datasets=(),
    synthetic_sequences=40,
    synthetic_frames=20,
    synthetic_size=(120, 160),
    batch_size=4,
    samples_per_epoch=16,
    num_workers=0,
    threads=1,
    tensorboard=False,
    backbone_lr_mult=1.0,
)


def dense_cfg(**kw) -> TrainConfig:
    base = dict(
        stage=1,
        distill="dense",
        model="mixformerv2-s",
        model_overrides=MICRO,
        teacher_model="mixformer-tiny",
        teacher_checkpoint="default",
        epochs=1,
        lr=1e-3,
        **DATA,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    """A 1-epoch dense-to-sparse student (the teacher of the stage-2 tests)."""
    out = tmp_path_factory.mktemp("s1")
    final = Trainer(dense_cfg(), out, progress=False).fit()
    assert final is not None
    return final


def remove_cfg(stage1: Path, **kw) -> TrainConfig:
    return dense_cfg(
        distill="remove",
        teacher_model="",
        teacher_checkpoint=str(stage1),
        init_checkpoint=str(stage1),
        remove_layers=(0, 2),
        distill_layers_student=(1, 3),
        distill_layers_teacher=(1, 3),
        **kw,
    )


# ---- presets -----------------------------------------------------------------------------------


def test_distill_presets_chain_and_sizes():
    for stem, deep, shallow, bins in [
        ("mixformerv2-b-distill", 12, 8, 72),
        ("mixformerv2-s-distill", 8, 4, 56),
        ("mbv3-distill-v2", 4, 2, 16),
    ]:
        s1, s2, s3, sc = (get_train_config(f"{stem}-{r}") for r in RUNS)
        assert (s1.distill, s2.distill, s3.distill, sc.distill) == (
            "dense",
            "remove",
            "finetune",
            "",
        )
        assert sc.stage == 2 and s1.stage == s2.stage == s3.stage == 1
        assert s1.model_overrides["depth"] == s2.model_overrides["depth"] == deep
        assert s3.model_overrides["depth"] == sc.model_overrides["depth"] == shallow
        assert len(s2.remove_layers) == deep - shallow
        assert {c.model_overrides["bins"] for c in (s1, s2, s3, sc)} == {bins}
        assert s2.init_checkpoint == s2.teacher_checkpoint == s3.teacher_checkpoint
        assert s2.init_checkpoint.endswith(f"{stem}-stage1/model_final.pth")
        assert s3.init_checkpoint.endswith(f"{stem}-stage2/model_final.pth")
        assert sc.stage1_checkpoint.endswith(f"{stem}-stage2-finetune/model_final.pth")
        assert len(s3.distill_layers_student) == len(s3.distill_layers_teacher)
        # the pairs name the same teacher blocks before and after the conversion
        kept = kept_blocks(deep, s2.remove_layers)
        assert [kept[i] for i in s3.distill_layers_student] == list(s2.distill_layers_student)
    b1, b2 = (
        get_train_config("mixformerv2-b-distill-stage1"),
        get_train_config("mixformerv2-b-distill-stage2"),
    )
    assert (b1.kl_weight, b2.feat_weight, b2.phase_out_epochs, b2.epochs) == (5.0, 0.2, 40, 45)
    assert b2.remove_layers == (0, 3, 6, 9) and b2.distill_layers_teacher == (2, 5, 8, 11)
    assert b1.teacher_model == "mixvit-b" and b1.with_model_crops().search_size == 288
    assert get_train_config("mixformerv2-s-distill-stage1").with_model_crops().search_size == 224
    assert sum("distill" in n for n in list_train_configs()) == 12


RUNS = ("stage1", "stage2", "stage2-finetune", "score")


def test_config_guards():
    with pytest.raises(ValueError, match="remove_layers"):
        dense_cfg(distill="remove")
    with pytest.raises(ValueError, match="pairs"):
        dense_cfg(distill="finetune", distill_layers_student=(0,))
    with pytest.raises(ValueError, match="distill must be"):
        dense_cfg(distill="sparse")
    with pytest.raises(ValueError, match="stage 1"):
        dense_cfg(stage=2, sampler="trident_pro")


def test_teacher_guards(tmp_path, stage1):
    with pytest.raises(ValueError, match="not found"):
        Trainer(dense_cfg(teacher_checkpoint=str(tmp_path / "none.pth")), tmp_path / "a")
    with pytest.raises(ValueError, match="no corner head"):  # a MixFormerV2 cannot teach stage 1
        Trainer(dense_cfg(teacher_model="", teacher_checkpoint=str(stage1)), tmp_path / "b")
    with pytest.raises(ValueError, match="bins"):
        Trainer(dense_cfg(model_overrides={**MICRO, "bins": 12}), tmp_path / "c")
    with pytest.raises(ValueError, match="MixFormerV2 student"):
        Trainer(dense_cfg(model="mixformer-tiny", model_overrides={}), tmp_path / "d")


def test_dense_feature_mimicking_from_a_vit_style_corner_teacher(tmp_path):
    """Our stage-1 feature term: a MobileNetV3 teacher's token sequence [z; o; x] after a
    block pairs with the student's first 2T+S tokens (no prediction tokens on the teacher)."""
    from mixformer.models.backbones.mbv3 import MBV3Config
    from mixformer.models.blocks import run_joint
    from mixformer.train.distill import DistillWeights, distill_losses

    torch.manual_seed(0)
    base = get_config("mixformer-mbv3")
    teacher = build_model(
        base.replace(
            backbone=MBV3Config(embed_dim=32, depth=2, num_heads=2, pretrained_features=False)
        )
    ).eval()
    student = build_model("mixformerv2-s", **{**MICRO, "template_size": 128, "search_size": 256,
                                              "bins": 16, "depth": 2})  # fmt: skip
    z, o, x = torch.randn(2, 3, 128, 128), torch.randn(2, 3, 128, 128), torch.randn(2, 3, 256, 256)
    out = teacher_targets(teacher, z, o, x, (0, 1))
    bb = teacher.backbone
    zo = bb.embed(torch.cat([z, o])) + bb.pos_embed_t
    seq = torch.cat([zo[:2], zo[2:], bb.embed(x) + bb.pos_embed_s], dim=1)  # (2, 384, 32)
    with torch.no_grad():
        first = run_joint(bb.blocks[:1], seq, (8, 8), (16, 16))
        second = run_joint(bb.blocks[1:], first, (8, 8), (16, 16))
    assert out["features"].shape == (2, 2, 384, 32)
    torch.testing.assert_close(out["features"][0], first)
    torch.testing.assert_close(out["features"][1], second)
    s_out = v2_forward(student, z, o, x, None, (0, 1))
    assert s_out["features"].shape == (2, 2, 388, 32)  # + 4 prediction tokens
    _, terms = distill_losses(s_out, out, torch.tensor([[0.4, 0.4, 0.2, 0.2]] * 2))
    want = torch.nn.functional.mse_loss(s_out["features"][:, :, :384], out["features"])
    torch.testing.assert_close(terms["feat"], want)
    total0, _ = distill_losses(s_out, out, torch.tensor([[0.4, 0.4, 0.2, 0.2]] * 2),
                               DistillWeights(feat=0.0))  # fmt: skip
    total1, _ = distill_losses(s_out, out, torch.tensor([[0.4, 0.4, 0.2, 0.2]] * 2),
                               DistillWeights(feat=1.0))  # fmt: skip
    torch.testing.assert_close(total1 - total0, want)
    with pytest.raises(ValueError, match="ViT-style"):  # CvT blocks work on maps
        teacher_targets(build_model("mixformer-tiny"), z[:, :, :64, :64], o[:, :, :64, :64],
                        x[:, :, :160, :160], (0,))  # fmt: skip
    # the Trainer checks the pairs when the run starts: the shipped teacher is 128 wide
    wide = {**MICRO, "template_size": 128, "search_size": 256, "bins": 16}
    layers = dict(distill_layers_student=(1,), distill_layers_teacher=(1,))
    with pytest.raises(ValueError, match="same width"):
        Trainer(dense_cfg(teacher_model="mixformer-mbv3", model_overrides=wide, **layers),
                tmp_path / "a")  # fmt: skip
    with pytest.raises(ValueError, match="ViT-style"):
        Trainer(dense_cfg(**layers), tmp_path / "b")  # mixformer-tiny: CvT


def test_init_from_teacher_copies_the_shared_stem_and_blocks(tmp_path):
    cfg = dense_cfg(
        model="mixformerv2-mbv3",
        model_overrides={"depth": 4, "bins": 16},
        teacher_model="mixformer-mbv3",
        init_from_teacher=True,
        freeze_patterns=("backbone.features.",),
    )
    tr = Trainer(cfg, tmp_path / "a", progress=False)
    own, theirs = tr.model.state_dict(), tr.teacher.state_dict()
    for k in ("backbone.features.stem.weight", "backbone.embed_proj.weight",
              "backbone.blocks.3.attn.qkv.weight", "backbone.blocks.0.mlp.fc2.bias"):  # fmt: skip
        torch.testing.assert_close(own[k], theirs[k], rtol=0, atol=0)
    assert "backbone.reg_tokens" not in theirs and "box_head.layers.0.0.weight" in own
    assert not tr.model.backbone.features.stem.weight.requires_grad  # frozen, as configured
    fresh = Trainer(cfg.replace(init_from_teacher=False), tmp_path / "b", progress=False)
    assert not torch.equal(fresh.model.state_dict()["backbone.blocks.3.attn.qkv.weight"],
                           theirs["backbone.blocks.3.attn.qkv.weight"])  # fmt: skip
    with pytest.raises(ValueError, match="init_from_teacher goes with"):
        cfg.replace(distill="finetune")
    with pytest.raises(ValueError, match="shares no tensor"):  # a CvT teacher: nothing shared
        Trainer(dense_cfg(init_from_teacher=True), tmp_path / "c")


# ---- the runs ----------------------------------------------------------------------------------


@torch.no_grad()
def _box_gap(student: MixFormerV2, teacher, batch: dict) -> float:
    t, s = batch["template_images"], batch["search_images"][:, 0]
    student.eval()
    a = v2_forward(student, t[:, 0], t[:, 1], s)["pred_boxes"]
    b = teacher_targets(teacher, t[:, 0], t[:, 1], s)["pred_boxes"]
    student.train()
    return float((a - b).abs().mean())


def test_micro_run_moves_the_student_towards_the_teacher(tmp_path):
    tr = Trainer(dense_cfg(epochs=3, samples_per_epoch=32, lr=2e-3), tmp_path, progress=False)
    tr.train_samples.set_epoch(1)
    batch = torch.utils.data.default_collate([tr.train_samples[i] for i in range(8)])
    before = _box_gap(tr.model, tr.teacher, batch)
    assert tr.fit() is not None
    after = _box_gap(tr.model, tr.teacher, batch)
    assert after < 0.8 * before, (before, after)
    assert all(not p.requires_grad for p in tr.teacher.parameters()) and not tr.teacher.training
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert float(rows[-1]["kl"]) < float(rows[0]["kl"])
    assert {"kl", "iou_teacher", "remove_rate"} <= set(rows[0])


def test_removal_run_rates_frozen_blocks_and_converted_student(tmp_path, stage1):
    cfg = remove_cfg(stage1, epochs=3, phase_out_epochs=3)
    tr = Trainer(cfg, tmp_path, progress=False)
    init = {k: v.clone() for k, v in tr.model.state_dict().items()}
    final = tr.fit()
    rows = [r for r in csv.DictReader((tmp_path / "log.csv").open()) if r["split"] == "train"]
    rates = [float(r["remove_rate"]) for r in rows]
    assert rates == [remove_rate(e, 3) for e in (1, 2, 3)]
    assert rates == pytest.approx([0.25, 0.0, 0.0], abs=1e-12) and rates[1] == 0.0
    assert all(float(r["feat"]) >= 0 for r in rows)
    deep = load_checkpoint(checkpoint_path(tmp_path, 3))["net"]
    for k, v in deep.items():
        if k.startswith(("backbone.blocks.0.", "backbone.blocks.2.")):
            assert torch.equal(v, init[k]), k  # removed blocks frozen
    assert not torch.equal(
        deep["backbone.blocks.1.mlp.fc1.weight"], init["backbone.blocks.1.mlp.fc1.weight"]
    )
    # the final weights are the shallower student, and compute what the phased-out one did
    shallow = build_model("mixformerv2-s", weights=final)
    assert isinstance(shallow, MixFormerV2) and len(shallow.backbone.blocks) == 2
    net = build_model("mixformerv2-s", **MICRO, score_head=False)
    net.load_state_dict(deep)
    batch = torch.utils.data.default_collate([tr.train_samples[i] for i in range(3)])
    z, o = batch["template_images"][:, 0], batch["template_images"][:, 1]
    x = batch["search_images"][:, 0]
    with torch.no_grad():
        a = v2_forward(net, z, o, x, block_rates(4, (0, 2), 0.0))["pred_boxes"]
        b = shallow(z, o, x)["pred_boxes"]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_resume_in_the_middle_of_a_removal_run(tmp_path, stage1):
    cfg = remove_cfg(stage1, epochs=2, phase_out_epochs=3)
    whole = Trainer(cfg, tmp_path / "whole", progress=False).fit()
    assert Trainer(cfg, tmp_path / "cut", progress=False).fit(stop_at_step=6) is None  # epoch 2
    resumed = Trainer(cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed.start_epoch == 1
    again = resumed.fit()
    a = torch.load(whole, weights_only=True)["net"]
    b = torch.load(again, weights_only=True)["net"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # a checkpoint of another distillation kind does not resume this run
    with pytest.raises(Exception, match="distill"):
        Trainer(cfg.replace(distill="finetune", remove_layers=()), tmp_path / "cut", resume=True)


# ---- the CLI -----------------------------------------------------------------------------------

CLI_OVERRIDES = [
    "model_overrides.embed_dim=32",
    "model_overrides.num_heads=2",
    "model_overrides.mlp_ratio=1.0",
    "model_overrides.bins=10",
    "model_overrides.template_size=64",
    "model_overrides.search_size=160",
    "epochs=1",
    "phase_out_epochs=1",
    "samples_per_epoch=8",
    "batch_size=4",
    "val_datasets=[]",
    "synthetic_sequences=20",
    "synthetic_frames=20",
    "synthetic_size=[120,160]",
    "num_workers=0",
    "tensorboard=false",
]


def test_distill_cli_chains_the_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["distill", "--teacher", "default", "--teacher-model", "mixformer-tiny"]
    args += ["--data", "synthetic", "--output", str(out), "--no-progress", "--device", "cpu"]
    assert main([*args, *CLI_OVERRIDES]) == 0
    student = out / "student.pth"
    assert f"--weights {student}" in capsys.readouterr().out
    model = build_model(None, weights=student)  # the config the file records
    assert isinstance(model, MixFormerV2) and len(model.backbone.blocks) == 2
    assert model.config.backbone.family == "v2-mbv3"  # the default recipe's student
    assert model.score_head is not None
    for run in RUNS:
        assert (out / run / "model_final.pth").is_file()
    # the tracker runs the student
    from mixformer.tracking import Tracker, TrackerConfig

    tracker = Tracker(model, TrackerConfig.for_model(model))
    frame = torch.randint(0, 255, (120, 160, 3), dtype=torch.uint8).numpy()
    tracker.init(frame, (40, 30, 30, 40))
    assert len(tracker.update(frame).box) == 4
    # again without --resume: refused; with it: nothing left to do
    assert main([*args, *CLI_OVERRIDES]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume", *CLI_OVERRIDES]) == 0


def test_distill_cli_errors(tmp_path, capsys, stage1):
    base = ["distill", "--data", "synthetic", "--output", str(tmp_path / "x")]
    assert main([*base, "--teacher", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err
    assert main([*base, "--teacher", str(stage1)]) == 2  # a MixFormerV2: no corner head
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corner head" in err
    assert main([*base, "--teacher", "default", "--student", "nope"]) == 2
    assert "recipe" in capsys.readouterr().err
    assert main([*base, "--teacher", "default", "--data", str(tmp_path / "nodata")]) == 2


# ---- DDP ---------------------------------------------------------------------------------------


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.slow
def test_two_gloo_processes_distil_like_one_process_with_combined_batch(tmp_path):
    cfg = dense_cfg(samples_per_epoch=4).to_dict()
    cfg.pop("batch_size")
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(cfg))
    train = ["-m", "mixformer.train", str(path)]
    opts = ["--no-progress", "--device", "cpu", "--output"]
    _run([sys.executable, *train, "batch_size=2", *opts, str(tmp_path / "one")], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    _run([*torchrun, *train, "batch_size=1", *opts, str(tmp_path / "two")], tmp_path)
    rows = [list(csv.DictReader((tmp_path / r / "log.csv").open()))[0] for r in ("one", "two")]
    for key in ("loss", "kl", "grad_norm"):
        assert float(rows[1][key]) == pytest.approx(float(rows[0][key]), rel=1e-4), key
    one = torch.load(tmp_path / "one" / "model_final.pth", weights_only=True)["net"]
    two = torch.load(tmp_path / "two" / "model_final.pth", weights_only=True)["net"]
    lr = float(rows[0]["lr"])
    for k in one:
        assert (one[k] - two[k]).abs().max() <= 2 * 2 * lr * 1.01, k
