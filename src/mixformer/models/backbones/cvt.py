"""MixCvT: the Convolutional Vision Transformer backbone with Mixed Attention blocks
(SPEC 1.4-1.8, 1.12). Three stages, each a strided conv embedding and ``depth`` blocks whose
q/k/v come from depthwise 3x3 convs + frozen BN (keys and values at stride 2) and Linear layers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from mixformer.models.attention import KVCache, MixedAttention
from mixformer.models.backbones.base import Backbone, BackboneConfig
from mixformer.models.blocks import Block, run_joint, run_search, run_templates, to_maps, to_tokens
from mixformer.models.errors import CheckpointError
from mixformer.models.layers import FrozenBatchNorm2d, LayerNorm, channels_last_, fold_conv_bn
from mixformer.models.registry import BACKBONES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CvTConfig(BackboneConfig):
    """Hyper-parameters of a MixCvT backbone (defaults: CvT-21 of ``baseline.yaml``).

    Attributes:
        dim_embed: channel width of each of the three stages.
        num_heads: attention heads per stage.
        depth: Mixed Attention blocks per stage.
        patch_size / patch_stride / patch_padding: ConvEmbed conv geometry per stage.
        mlp_ratio: MLP hidden width relative to the stage width.
        drop_path_rate: maximum stochastic-depth rate per stage (linear ramp over the blocks).
    """

    family = "cvt"
    dim_embed: tuple[int, int, int] = (64, 192, 384)
    num_heads: tuple[int, int, int] = (1, 3, 6)
    depth: tuple[int, int, int] = (1, 4, 16)
    patch_size: tuple[int, int, int] = (7, 3, 3)
    patch_stride: tuple[int, int, int] = (4, 2, 2)
    patch_padding: tuple[int, int, int] = (2, 1, 1)
    mlp_ratio: float = 4.0
    drop_path_rate: tuple[float, float, float] = (0.0, 0.0, 0.1)

    @property
    def out_dim(self) -> int:
        return self.dim_embed[-1]

    @property
    def stride(self) -> int:
        s = 1
        for v in self.patch_stride:
            s *= v
        return s

    @property
    def num_blocks(self) -> int:
        return sum(self.depth)


class ConvEmbed(nn.Module):
    """Strided conv + per-position LayerNorm: ``(N, C_in, H, W) -> (N, h*w, D)`` tokens."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel, stride=stride, padding=padding)
        self.norm = LayerNorm(dim)
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Returns ``(tokens (N, h*w, D), h, w)``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(to_tokens(x)), h, w

    def fuse(self) -> None:
        """Channels-last weight and input (the layout of the token maps)."""
        channels_last_(self.proj)
        self.channels_last = True


class ConvProjection(nn.Module):
    """Depthwise 3x3 conv (no bias) + FrozenBatchNorm2d on token maps ("dw_bn").

    Args:
        dim: channels ``D``.
        stride: 1 for queries, 2 for keys and values.
    """

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(dim, dim, 3, stride=stride, padding=1, bias=False, groups=dim)
        self.bn: nn.Module = FrozenBatchNorm2d(dim)

    def forward(self, tokens: torch.Tensor, n_images: int, h: int, w: int) -> torch.Tensor:
        """Project ``n_images`` maps independently (zero padding at each image's own border).

        Args:
            tokens: ``(B, n_images*h*w, D)``.
        Returns:
            ``(B, n_images*h'*w', D)`` with ``h' = ceil(h / stride)``.
        """
        b, _, d = tokens.shape
        maps = to_maps(tokens.reshape(b * n_images, h * w, d), h, w)
        return to_tokens(self.bn(self.conv(maps))).reshape(b, -1, d)

    def fuse(self) -> None:
        """Fold the frozen BN into the conv."""
        if isinstance(self.bn, FrozenBatchNorm2d):
            fold_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()


class CvTAttention(MixedAttention):
    """Mixed attention with conv projections; softmax scale of the *full* stage width
    (SPEC 5, quirk 1)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(dim, num_heads, dim**-0.5)
        self.conv_proj_q = ConvProjection(dim, stride=1)
        self.conv_proj_k = ConvProjection(dim, stride=2)
        self.conv_proj_v = ConvProjection(dim, stride=2)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def project_qkv(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.heads(self.proj_q(self.conv_proj_q(tokens, n_images, h, w)))
        k = self.heads(self.proj_k(self.conv_proj_k(tokens, n_images, h, w)))
        v = self.heads(self.proj_v(self.conv_proj_v(tokens, n_images, h, w)))
        return q, k, v

    def key_grid(self, h: int, w: int) -> tuple[int, int]:
        return (h + 1) // 2, (w + 1) // 2


class Stage(nn.Module):
    """ConvEmbed followed by ``depth`` Mixed Attention blocks."""

    def __init__(self, cfg: CvTConfig, i: int) -> None:
        super().__init__()
        in_chans = 3 if i == 0 else cfg.dim_embed[i - 1]
        dim = cfg.dim_embed[i]
        self.patch_embed = ConvEmbed(
            in_chans, dim, cfg.patch_size[i], cfg.patch_stride[i], cfg.patch_padding[i]
        )
        depth = cfg.depth[i]
        top = cfg.drop_path_rate[i]
        rates = [top * j / (depth - 1) if depth > 1 else 0.0 for j in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim, CvTAttention(dim, cfg.num_heads[i]), cfg.mlp_ratio, r) for r in rates
        )

    def forward(
        self, z: torch.Tensor, o: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint forward on maps ``z, o: (B, C, H_t, W_t)`` and ``x: (B, C, H_s, W_s)``."""
        b = z.shape[0]
        zo, t_h, t_w = self.patch_embed(torch.cat([z, o], dim=0))
        xs, s_h, s_w = self.patch_embed(x)
        n_t = t_h * t_w
        tokens = run_joint(
            self.blocks, torch.cat([zo[:b], zo[b:], xs], dim=1), (t_h, t_w), (s_h, s_w)
        )
        return (
            to_maps(tokens[:, :n_t], t_h, t_w),
            to_maps(tokens[:, n_t : 2 * n_t], t_h, t_w),
            to_maps(tokens[:, 2 * n_t :], s_h, s_w),
        )

    def forward_templates(
        self, maps: torch.Tensor, n_images: int
    ) -> tuple[torch.Tensor, list[KVCache]]:
        """``maps (B*n_images, C, H, W)`` (a sample's images consecutive, template first) ->
        ``(maps (B*n_images, D, h, w), per-block k/v)``."""
        tokens, h, w = self.patch_embed(maps)
        d = tokens.shape[-1]
        tokens, cache = run_templates(
            self.blocks, tokens.reshape(-1, n_images * h * w, d), n_images, h, w
        )
        return to_maps(tokens.reshape(-1, h * w, d), h, w), cache

    def forward_search(self, x: torch.Tensor, cache: list[KVCache]) -> torch.Tensor:
        """Search-side stage: ``(B, C, H, W) -> (B, D, h, w)`` using the template cache."""
        tokens, h, w = self.patch_embed(x)
        return to_maps(run_search(self.blocks, tokens, h, w, cache), h, w)


@BACKBONES.register("cvt")
class CvTBackbone(Backbone):
    """Three CvT stages. ``norm`` and ``head`` are the unused CvT classifier (kept for loading)."""

    Config = CvTConfig

    def __init__(self, cfg: CvTConfig, template_size: int = 128, search_size: int = 320) -> None:
        super().__init__(cfg)
        self.stage0 = Stage(cfg, 0)
        self.stage1 = Stage(cfg, 1)
        self.stage2 = Stage(cfg, 2)
        self.norm = LayerNorm(cfg.out_dim)
        self.head = nn.Linear(cfg.out_dim, 1000)

    @property
    def stages(self) -> tuple[Stage, Stage, Stage]:
        return (self.stage0, self.stage1, self.stage2)

    def forward(
        self,
        template: torch.Tensor,
        online_template: torch.Tensor,
        search: torch.Tensor,
        return_stages: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Joint forward.

        Args:
            template, online_template: ``(B, 3, 128, 128)`` normalised images.
            search: ``(B, 3, 320, 320)`` normalised image.
            return_stages: return ``[(z, o, x) maps]`` of every stage instead.
        Returns:
            ``(z_map (B, C, 8, 8), x_map (B, C, 20, 20))`` of the last stage.
        """
        z, o, x = template, online_template, search
        outs = []
        for stage in self.stages:
            z, o, x = stage(z, o, x)
            outs.append((z, o, x))
        return outs if return_stages else (z, x)

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> tuple[list[KVCache], torch.Tensor]:
        """Encode the template and ``N`` online templates once (SPEC 1.12, ``set_online``).

        Args:
            template: ``(B, 3, 128, 128)``; online_templates: ``(B, N, 3, 128, 128)``.
        Returns:
            ``(kv, z_map)``: one ``(k, v)`` per block of all stages; ``z_map (B, C, 8, 8)``.
        """
        b, n = online_templates.shape[:2]
        maps = torch.cat([template[:, None], online_templates], dim=1).flatten(0, 1)
        kv: list[KVCache] = []
        for stage in self.stages:
            maps, cache = stage.forward_templates(maps, n + 1)
            kv.extend(cache)
        return kv, maps.reshape(b, n + 1, *maps.shape[1:])[:, 0]

    def forward_search(self, search: torch.Tensor, kv: list[KVCache]) -> torch.Tensor:
        """Search features ``(B, C, 20, 20)`` from ``search (B, 3, 320, 320)`` and the cache."""
        x, i = search, 0
        for stage in self.stages:
            n = len(stage.blocks)
            x = stage.forward_search(x, kv[i : i + n])
            i += n
        return x

    @classmethod
    def is_pretrained_file(cls, state_dict: dict[str, torch.Tensor]) -> bool:
        """ImageNet CvT classification checkpoints: raw ``stage{i}.*`` keys (SPEC 3.10)."""
        return any(k.startswith("stage0.") for k in state_dict)

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """ImageNet CvT backbone (SPEC 3.10): extra blocks and the cls token are ignored."""
        own = self.state_dict()
        sd = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
        bad = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
        if bad:
            raise CheckpointError(
                f"CvT checkpoint does not fit this backbone: {bad[0]} "
                f"{tuple(sd[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}"
            )
        missing = [k for k in own if k not in sd]
        if missing:
            raise CheckpointError(f"CvT checkpoint lacks backbone keys: {missing[:5]}")
        ignored = [k for k in sd if k not in own]
        self.load_state_dict({k: v for k, v in sd.items() if k in own})
        return ignored
