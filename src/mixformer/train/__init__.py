"""Two-stage training of MixFormer (SPEC 3): configs, losses, loop, checkpoints, DDP.

Quick use::

    from mixformer.train import Trainer, load_train_config
    cfg, name = load_train_config("tiny-synthetic-stage1.yaml", {"epochs": 2})
    Trainer(cfg, "runs/tiny-stage1").fit()
"""

from mixformer.train.config import (
    TrainConfig,
    apply_overrides,
    get_train_config,
    list_train_configs,
    load_train_config,
    parse_key_values,
)
from mixformer.train.network import build_network
from mixformer.train.samples import measure_data
from mixformer.train.trainer import NonFiniteLossError, Trainer

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "apply_overrides",
    "build_network",
    "get_train_config",
    "list_train_configs",
    "load_train_config",
    "measure_data",
    "parse_key_values",
]
