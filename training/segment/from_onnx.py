"""Rebuild a torch checkpoint (``best.pt``) from a shipped ONNX model, to fine-tune it.

    python training/segment/from_onnx.py --onnx src/spinereg/segment/models/cord_fine.onnx \
        --channels 8,16,32,48 --stats DIR/fine_s2_n1000.npz --out DIR/run_shipped/best.pt

The ONNX export folded every BatchNorm into the convolution before it (weight and bias). The
convolutions are restored in forward order; each BatchNorm is then given the statistics of its
input over a synthetic set (``--stats``: running mean and variance) and the affine part that undoes
them, so the rebuilt network computes exactly what the ONNX model computes in eval mode, and its
batch statistics in training mode are those it would have had. The check against onnxruntime on
the stats set is printed (maximum absolute logit difference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from net import UNet2D  # noqa: E402


def forward_convs(model: UNet2D) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """The convolutions in the order the forward pass (and so the ONNX graph) runs them, each with
    the BatchNorm that follows it (None for the 1x1 up-convolutions and the head)."""
    out: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []

    def block(b: nn.Sequential) -> None:
        out.extend([(b[0], b[1]), (b[3], b[4])])

    for blk in model.enc:
        block(blk)
    for up, dec in zip(model.up, model.dec, strict=True):
        out.append((up[1], None))
        block(dec)
    out.append((model.head, None))
    return out


def rebuild(onnx_path: Path, channels: tuple[int, ...], stats_images: np.ndarray) -> UNet2D:
    graph = onnx.load(str(onnx_path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    model = UNet2D(channels)
    pairs = forward_convs(model)
    if len(nodes) != len(pairs):
        raise SystemExit(f"{onnx_path}: {len(nodes)} convolutions, the network has {len(pairs)}")
    biases: list[torch.Tensor | None] = []
    with torch.no_grad():
        for node, (conv, bn) in zip(nodes, pairs, strict=True):
            w = torch.from_numpy(init[node.input[1]].copy())
            if w.shape != conv.weight.shape:
                raise SystemExit(f"{node.name}: weight {tuple(w.shape)} vs {tuple(conv.weight.shape)}")
            conv.weight.copy_(w)
            b = torch.from_numpy(init[node.input[2]].copy()) if len(node.input) > 2 else None
            if bn is None:
                if conv.bias is not None:
                    conv.bias.copy_(b if b is not None else torch.zeros_like(conv.bias))
            else:  # identity normalisation first, the folded bias as beta
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.copy_(b)
            biases.append(b)
    model.eval()
    # statistics of each BatchNorm's input (the convolution's output) over the stats set
    sums: dict[nn.BatchNorm2d, list[torch.Tensor]] = {}

    def hook(mod: nn.Module, inp: tuple[torch.Tensor], _out: torch.Tensor) -> None:
        z = inp[0].double()
        s = sums.setdefault(mod, [torch.zeros(z.shape[1], dtype=torch.float64)] * 3)
        sums[mod] = [s[0] + z.sum((0, 2, 3)), s[1] + (z ** 2).sum((0, 2, 3)), s[2] + z[:, 0].numel()]

    handles = [bn.register_forward_hook(hook) for _, bn in pairs if bn is not None]
    x = torch.from_numpy(stats_images.astype(np.float32))[:, None]
    with torch.no_grad():
        for i in range(0, len(x), 100):
            model(x[i: i + 100])
    for h in handles:
        h.remove()
    with torch.no_grad():
        for (_, bn), b in zip(pairs, biases, strict=True):
            if bn is None:
                continue
            s1, s2, n = sums[bn]
            mu = s1 / n
            var = torch.clamp(s2 / n - mu ** 2, min=1e-8)
            bn.running_mean.copy_(mu.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())
            bn.bias.copy_(b + mu.float())
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--channels", default="8,16,32,48")
    ap.add_argument("--stats", required=True, help="a synthetic set (make_data.py) for the statistics")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    imgs = np.load(a.stats)["image"].astype(np.float32)
    model = rebuild(Path(a.onnx), tuple(int(c) for c in a.channels.split(",")), imgs)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
    x = imgs[:200, None]
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    print(f"wrote {out}; max |logit - onnx| over 200 samples: {np.abs(got - ref).max():.2e}")


if __name__ == "__main__":
    main()
