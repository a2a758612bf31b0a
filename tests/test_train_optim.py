"""Trainable parameters, AdamW groups, step schedule and ImageNet CvT initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mixformer.train import get_train_config
from mixformer.train.network import build_network
from mixformer.train.optim import build_optimizer, build_scheduler

TINY_CROPS = {"template_size": 64, "search_size": 160}  # mixformer-tiny's
SMALL = {"dim_embed": [16, 32, 32], "num_heads": [1, 1, 1], "depth": [1, 1, 1], "head_dim": 32}


def test_stage1_groups_and_backbone_multiplier() -> None:
    cfg = get_train_config("mixformer-22k-stage1").replace(
        model="mixformer-tiny", model_overrides=SMALL, pretrained="", **TINY_CROPS
    )
    model = build_network(cfg)
    assert model.score_branch is None and model.training
    opt = build_optimizer(model, cfg)
    head, backbone = opt.param_groups
    assert head["lr"] == pytest.approx(1e-4) and backbone["lr"] == pytest.approx(1e-5)
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("backbone" not in names[id(p)] for p in head["params"])
    assert all("backbone" in names[id(p)] for p in backbone["params"])
    sched = build_scheduler(opt, cfg.replace(lr_drop_epoch=2))
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5])


def test_freeze_stage0_trains_stages_1_2_and_head_only() -> None:
    cfg = get_train_config("mixformer-large-stage1").replace(
        model="mixformer-tiny", model_overrides=SMALL, pretrained="", **TINY_CROPS
    )
    model = build_network(cfg)
    for name, p in model.named_parameters():
        expected = any(s in name for s in ("stage1", "stage2", "box_head"))
        assert p.requires_grad == expected, name
    opt = build_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-5])


def test_stage2_trains_score_branch_only(tmp_path: Path) -> None:
    s1 = get_train_config("tiny-synthetic-stage1").replace(model_overrides=SMALL)
    path = tmp_path / "s1.pth"
    torch.save({"net": build_network(s1).state_dict()}, path)
    s2 = get_train_config("tiny-synthetic-stage2").replace(
        model_overrides=SMALL, stage1_checkpoint=str(path)
    )
    model = build_network(s2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("score_branch.") for n in trainable)
    assert len(build_optimizer(model, s2).param_groups) == 1
    with pytest.raises(ValueError, match="not found"):
        build_network(s2.replace(stage1_checkpoint=str(tmp_path / "missing.pth")))


def test_imagenet_cvt_backbone_initialisation(tmp_path: Path) -> None:
    cfg = get_train_config("tiny-synthetic-stage1").replace(model_overrides=SMALL, seed=1)
    donor = build_network(cfg.replace(seed=2)).backbone.state_dict()
    cvt = {k: v for k, v in donor.items() if not k.endswith("num_batches_tracked")}
    cvt["stage2.cls_token"] = torch.zeros(1, 1, 32)  # CvT-21 has one; it is ignored
    path = tmp_path / "cvt.pth"
    torch.save(cvt, path)
    model = build_network(cfg.replace(pretrained=str(path)))
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, donor[k]), k
    with pytest.raises(ValueError, match="pretrained=''"):
        build_network(cfg.replace(pretrained=str(tmp_path / "missing.pth")))


def test_v2_prediction_token_embedding_trains_fixed_tables_do_not() -> None:
    """MixFormerV2's learned ``pos_embed_reg`` trains (backbone group), the sin-cos tables not."""
    cfg = get_train_config("mixformerv2-s-stage1").replace(
        model_overrides={"depth": 1, "template_size": 32, "search_size": 64, "bins": 8},
        pretrained="",
        template_size=32,
        search_size=64,
    )
    model = build_network(cfg)
    grad = {n: p.requires_grad for n, p in model.named_parameters()}
    assert grad["backbone.pos_embed_reg"] and grad["backbone.reg_tokens"]
    assert not grad["backbone.pos_embed_s"] and not grad["backbone.pos_embed_t"]
    _, backbone = build_optimizer(model, cfg).param_groups
    assert any(p is model.backbone.pos_embed_reg for p in backbone["params"])


def test_slow_patterns_get_their_own_learning_rate() -> None:
    cfg = get_train_config("mixformer-22k-stage1").replace(
        model="mixformer-tiny",
        model_overrides=SMALL,
        pretrained="",
        slow_patterns=("backbone.stage2.",),
        slow_lr_mult=0.05,
        **TINY_CROPS,
    )
    model = build_network(cfg)
    opt = build_optimizer(model, cfg)
    head, backbone, slow = opt.param_groups
    assert slow["lr"] == pytest.approx(5e-6) and backbone["lr"] == pytest.approx(1e-5)
    names = {id(p): n for n, p in model.named_parameters()}
    assert slow["params"] and all("backbone.stage2." in names[id(p)] for p in slow["params"])
    assert not any("backbone.stage2." in names[id(p)] for p in backbone["params"])
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in opt.param_groups) == n_trainable
