"""The model presets live next to their family (``mixformer.models.presets``) and one registry
mechanism finds every name: the presets build exactly the configs they built before the
reorganisation (snapshot ``tests/data/preset_configs.json``, written by the code before it), the
released files are records of their own, duplicates raise, and a family registered from outside
the package is built by ``build_model``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mixformer import build_model
from mixformer.models import (
    BACKBONES,
    HEADS,
    NETWORKS,
    PRESETS,
    MixFormer,
    MixFormerV2,
    ModelConfig,
    Release,
    get_config,
    get_preset,
    list_models,
    register_preset,
)
from mixformer.models.backbones.cvt import CvTBackbone, CvTConfig
from mixformer.models.registry import Registry

SNAPSHOT = json.loads((Path(__file__).parent / "data" / "preset_configs.json").read_text())


def test_the_same_preset_names_as_before():
    assert set(SNAPSHOT["configs"]) <= set(list_models())  # new presets: add them to the snapshot
    assert list(PRESETS) == list_models()


@pytest.mark.parametrize("name", sorted(SNAPSHOT["configs"]))
def test_every_preset_builds_the_config_it_built_before(name):
    before = dict(SNAPSHOT["configs"][name])
    files = before.pop("releases")  # a ModelConfig field before: now the preset's records
    cfg = get_config(name)
    assert cfg.to_dict() == before
    assert ModelConfig.from_dict(cfg.to_dict()).to_dict() == before
    preset = get_preset(name)
    assert list(preset.files) == files == SNAPSHOT["weights"][name]["releases"]
    assert preset.release_page == SNAPSHOT["weights"][name]["release_page"]
    assert all(isinstance(r, Release) for r in preset.releases)


@pytest.mark.parametrize("name", sorted(SNAPSHOT["configs"]))
def test_old_config_dicts_with_releases_still_load(name):
    old = SNAPSHOT["configs"][name]  # what checkpoints of the previous version recorded
    cfg = ModelConfig.from_dict(old)
    assert cfg == get_config(name)
    assert cfg.tracking == get_config(name).tracking


def test_got10k_only_files_are_marked():
    got = {r.file for n in list_models() for r in get_preset(n).releases if r.got10k_trained}
    assert got == {
        "mixformer_cvt_online_22k_got.pth.tar",
        "mixformer_cvt_online_got_1k.pth.tar",
        "mixformer_vit_base_online_got.pth.tar",
        "mixformer_vit_large_online_got.pth.tar",
        "mixformer_convmae_base_online_got.pth.tar",
        "mixformer_convmae_large_online_got.pth.tar",
    }


def test_the_cli_reads_got10k_only_files_by_name(caplog):
    """``--got10k-trained`` is automatic for a released GOT-10k-only file (by its base name)."""
    from argparse import Namespace

    from mixformer.cli.common import got10k_trained

    def args(weights, flag=False, model="mixformer-22k"):
        return Namespace(model=model, weights=weights, got10k_trained=flag)

    preset = get_preset("mixformer-22k")
    assert preset.release("/d/mixformer_cvt_online_22k_got.pth.tar").got10k_trained
    assert not preset.release("mixformer_cvt_online_22k.pth.tar").got10k_trained
    assert preset.release("renamed.pth") is None
    with caplog.at_level("INFO"):
        assert got10k_trained(args("/d/mixformer_cvt_online_22k_got.pth.tar"))
    assert "GOT-10k only" in caplog.text
    assert not got10k_trained(args("/d/mixformer_cvt_online_22k.pth.tar"))
    assert not got10k_trained(args(None)) and not got10k_trained(args("default"))
    assert got10k_trained(args("renamed.pth", flag=True))  # the flag for renamed files
    assert not got10k_trained(args("x_got.pth.tar", model="no-such-model"))


def test_duplicate_names_raise_in_every_registry():
    with pytest.raises(ValueError, match="already registered"):
        register_preset("mixformer-22k")(ModelConfig)
    with pytest.raises(ValueError, match="already registered"):
        NETWORKS.register("mlp")(MixFormerV2)
    with pytest.raises(ValueError, match="already registered"):
        HEADS.register("corner")(object)
    with pytest.raises(ValueError, match="already registered"):
        BACKBONES.register("cvt")(object)
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register("a")(2)
    with pytest.raises(KeyError, match="unknown model 'mixformer-22'; did you mean"):
        get_config("mixformer-22")


def test_network_dispatch_by_head_type():
    assert type(MixFormer.__new__(MixFormer, get_config("mixformerv2-s"))) is MixFormerV2
    assert type(MixFormer.__new__(MixFormer, get_config("mixformer-tiny"))) is MixFormer


@dataclass(frozen=True)
class _TestFamilyConfig(CvTConfig):
    family = "test-family"


class _TestFamilyBackbone(CvTBackbone):
    Config = _TestFamilyConfig

    @classmethod
    def is_pretrained_file(cls, sd) -> bool:  # noqa: ANN001
        return False


@pytest.fixture
def new_family():
    """A family registered from a test: backbone + preset, removed afterwards."""
    BACKBONES.register("test-family")(_TestFamilyBackbone)
    release = Release("test_family.pth.tar", "nowhere")

    @register_preset("test-family-tiny", releases=(release,))
    def _preset() -> ModelConfig:
        tiny = get_config("mixformer-tiny")
        backbone = _TestFamilyConfig(dim_embed=(32, 64, 128), num_heads=(1, 1, 2), depth=(1, 2, 2))
        return ModelConfig(backbone=backbone, head=tiny.head, template_size=64, search_size=160)

    yield "test-family-tiny"
    del BACKBONES._items["test-family"]
    del PRESETS._items["test-family-tiny"]


def test_a_family_registered_in_a_test_is_built(new_family, tmp_path):
    assert new_family in list_models()
    assert get_preset(new_family).files == ("test_family.pth.tar",)
    model = build_model(new_family)
    assert isinstance(model.backbone, _TestFamilyBackbone)
    assert model.config.family == "test-family"
    out = model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 160, 160))
    assert out["pred_boxes"].shape == (1, 1, 4)
    # its config round-trips through a dict (as checkpoints record it)
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config
