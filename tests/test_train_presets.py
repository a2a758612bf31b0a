"""The training presets live next to their family (``mixformer.train.presets``) and are found
through the models' :class:`~mixformer.models.registry.Registry`: every preset builds exactly the
config it built before the move (snapshot ``tests/data/train_preset_configs.json``, written by
the code before it), duplicates raise, and a preset registered from outside the package is found
by name, by ``load_train_config`` and by a YAML ``base:``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixformer.models.registry import Registry
from mixformer.train import (
    TrainConfig,
    config,
    get_train_config,
    list_train_configs,
    load_train_config,
)
from mixformer.train.config import TRAIN_PRESETS, register_train_preset

SNAPSHOT = json.loads((Path(__file__).parent / "data" / "train_preset_configs.json").read_text())


def _plain(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict(), sort_keys=True, default=str))


def test_the_same_training_preset_names_as_before():
    assert set(SNAPSHOT) <= set(list_train_configs())  # new presets: add them to the snapshot
    assert list_train_configs() == sorted(list_train_configs())


@pytest.mark.parametrize("name", sorted(SNAPSHOT))
def test_every_training_preset_builds_the_config_it_built_before(name):
    assert _plain(get_train_config(name)) == SNAPSHOT[name]


def test_duplicates_raise_and_a_preset_from_outside_is_found(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="training preset 'mbv3-real-stage1' is already"):
        register_train_preset("mbv3-real-stage1")(TrainConfig)
    scratch: Registry = Registry("training preset")  # a copy, so the test leaves no trace
    for known, fn in TRAIN_PRESETS.items():
        scratch.register(known)(fn)
    monkeypatch.setattr(config, "TRAIN_PRESETS", scratch)
    name = "test-outside-stage1"
    register_train_preset(name)(lambda: TrainConfig(model="mixformer-tiny", epochs=3))
    assert name in list_train_configs()
    cfg, got = load_train_config(name, {"lr": 1e-3})
    assert (got, cfg.epochs, cfg.lr) == (name, 3, 1e-3)
    yml = tmp_path / "x.yaml"
    yml.write_text(f"base: {name}\nbatch_size: 4\n")
    cfg, got = load_train_config(yml)
    assert (got, cfg.epochs, cfg.batch_size) == ("x", 3, 4)
    with pytest.raises(KeyError, match="unknown training preset 'mbv3-real-stage'; did you mean"):
        get_train_config("mbv3-real-stage")
