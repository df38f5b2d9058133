"""Small 2D U-Net for axial slices (a few hundred thousand parameters), exportable to ONNX."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """Encoder-decoder with skip connections; input (B, 1, H, W), H and W multiples of
    ``2 ** (len(channels) - 1)``; output: one logit per pixel (B, 1, H, W)."""

    def __init__(self, channels: tuple[int, ...] = (16, 24, 32, 48), in_ch: int = 1):
        super().__init__()
        self.channels = tuple(channels)
        self.enc = nn.ModuleList()
        c = in_ch
        for ch in channels:
            self.enc.append(_block(c, ch))
            c = ch
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for ch in reversed(channels[:-1]):
            self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                         nn.Conv2d(c, ch, 1, bias=False)))
            self.dec.append(_block(2 * ch, ch))
            c = ch
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, blk in enumerate(self.enc):
            x = blk(x)
            if i < len(self.enc) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.up, self.dec, strict=True):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
