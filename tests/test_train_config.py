"""Training configs: presets, YAML override files, key=value overrides, error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixformer.train import (
    TrainConfig,
    get_train_config,
    list_train_configs,
    load_train_config,
    parse_key_values,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "mixformer" / "train" / "configs"


def test_reference_presets_follow_spec_table() -> None:
    s1 = get_train_config("mixformer-22k-stage1")
    assert (s1.stage, s1.sampler, s1.epochs, s1.lr_drop_epoch, s1.batch_size) == (
        1,
        "causal",
        500,
        400,
        8,
    )
    assert (s1.lr, s1.backbone_lr_mult, s1.grad_clip, s1.weight_decay) == (1e-4, 0.1, 0.1, 1e-4)
    assert (s1.iou_weight, s1.l1_weight) == (2.0, 5.0)
    assert s1.search_center_jitter == 4.5 and s1.search_scale_jitter == 0.5
    assert get_train_config("mixformer-1k-stage1").backbone_lr_mult == 1.0
    assert get_train_config("mixformer-large-stage1").freeze_stage0
    s2 = get_train_config("mixformer-22k-stage2")
    assert (s2.stage, s2.sampler, s2.epochs, s2.lr_drop_epoch, s2.batch_size) == (
        2,
        "trident_pro",
        30,
        20,
        32,
    )
    assert get_train_config("mixformer-large-stage2").batch_size == 16
    assert get_train_config("mixformer-got-stage2").epochs == 40
    assert get_train_config("mixformer-got-stage1").datasets == ("got10k_train_full",)


def test_every_shipped_yaml_loads_and_names_a_preset() -> None:
    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        cfg, name = load_train_config(f)
        assert name == f.stem
        assert f.stem in list_train_configs()
        assert cfg.stage == (2 if "stage2" in f.stem else 1)
        if cfg.stage == 2:
            assert cfg.stage1_checkpoint


def test_unknown_key_names_closest(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("base: tiny-synthetic-stage1\nepochz: 3\n")
    with pytest.raises(KeyError, match="did you mean 'epochs'"):
        load_train_config(f)
    with pytest.raises(KeyError, match="'batch_size'"):
        load_train_config("tiny-synthetic-stage1", {"batchsize": 2})


def test_overrides_and_key_values(tmp_path: Path) -> None:
    pairs = parse_key_values(["epochs=3", "lr=1e-3", "datasets=[synthetic]", "data_roots.lasot=/d"])
    assert pairs["epochs"] == 3 and pairs["data_roots"] == {"lasot": "/d"}
    f = tmp_path / "c.yaml"
    f.write_text("base: mixformer-22k-stage1\ndata_roots: {got10k: /g}\nbatch_size: 2\n")
    cfg, _ = load_train_config(f, pairs)
    assert (
        cfg.epochs == 3
        and cfg.batch_size == 2
        and cfg.lr == 1e-3
        and cfg.datasets == ("synthetic",)
    )
    assert cfg.data_roots == {"got10k": "/g", "lasot": "/d"}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="key=value"):
        parse_key_values(["epochs"])


def test_invalid_values_are_named() -> None:
    with pytest.raises(ValueError, match="did you mean 'lasot'"):
        TrainConfig(datasets=("lasott",), dataset_ratio=(1.0,))
    with pytest.raises(ValueError, match="stage"):
        TrainConfig(stage=3)
    with pytest.raises(ValueError, match="dataset_ratio"):
        TrainConfig(datasets=("lasot",), dataset_ratio=(1.0, 1.0))
    with pytest.raises(ValueError, match="composite_variant must be one of .*train-border"):
        TrainConfig(composite_variant="nope")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_train_config("no-such-config.yaml")
