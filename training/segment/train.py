"""Train a cord model on a synthetic set (make_data.py), select on a synthetic validation set,
export ONNX and write the provenance JSON next to it.

    python training/segment/train.py --mode fine --train DIR/fine_s1_n24000.npz \
        --val DIR/fine_s2_n1000.npz --seed 0 --steps 3000 --out DIR/run_fine_s0

Fixed seeds (torch, numpy), CPU, checkpoints every ``--ckpt-every`` steps (``--resume`` continues
from the last one). Validation: Dice of (p > 0.5) vs (target > 0.5) over the whole validation set
(every ``--val-every`` steps); the best checkpoint by validation Dice is exported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from net import UNet2D, n_params  # noqa: E402


def load_set(paths: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One set or several (comma-separated, concatenated); kept as float16 / uint8 in memory."""
    imgs, tgts = [], []
    for path in paths.split(","):
        z = np.load(path)
        imgs.append(z["image"].astype(np.float16))
        tgts.append(z["target"].astype(np.uint8))
    return torch.from_numpy(np.concatenate(imgs))[:, None], torch.from_numpy(np.concatenate(tgts))[:, None]


def as_float(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.float(), t.float() / 255.0


def loss_fn(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logit, target)
    p = torch.sigmoid(logit)
    inter = (p * target).sum()
    dice = 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


@torch.no_grad()
def evaluate(model: torch.nn.Module, img: torch.Tensor, tgt: torch.Tensor, bs: int = 100) -> dict:
    model.eval()
    inter = s_p = s_t = 0.0
    losses = []
    per = []
    for i in range(0, len(img), bs):
        x, t = as_float(img[i: i + bs], tgt[i: i + bs])
        lo = model(x)
        losses.append(float(loss_fn(lo, t)))
        p = (torch.sigmoid(lo) > 0.5).float()
        tb = (t > 0.5).float()
        inter += float((p * tb).sum())
        s_p += float(p.sum())
        s_t += float(tb.sum())
        ip = (p * tb).sum((1, 2, 3))
        den = p.sum((1, 2, 3)) + tb.sum((1, 2, 3))
        ok = tb.sum((1, 2, 3)) > 20
        per.extend((2 * ip[ok] / den[ok]).tolist())
    model.train()
    return {"dice_global": 2 * inter / max(s_p + s_t, 1), "dice_median": float(np.median(per)) if per else 0.0,
            "dice_p10": float(np.percentile(per, 10)) if per else 0.0, "loss": float(np.mean(losses))}


def augment(x: torch.Tensor, t: torch.Tensor, g: torch.Generator, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[-1]
    if crop < n:
        i, j = (int(v) for v in torch.randint(0, n - crop + 1, (2,), generator=g))
        x, t = x[..., i: i + crop, j: j + crop], t[..., i: i + crop, j: j + crop]
    # per-sample contrast jitter on the normalised image (the set already varies widely)
    b = x.shape[0]
    gain = torch.exp(torch.randn(b, 1, 1, 1, generator=g) * 0.1)
    bias = torch.randn(b, 1, 1, 1, generator=g) * 0.05
    return x * gain + bias, t


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    model.eval()
    x = torch.zeros(1, 1, 64, 64)
    torch.onnx.export(model, x, str(path), input_names=["image"], output_names=["logit"], opset_version=17,
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                    "logit": {0: "batch", 2: "height", 3: "width"}}, dynamo=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["fine", "locate"], required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--channels", default="8,16,32,48")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", help="start from these weights (a best.pt of an earlier run): fine-tuning")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    channels = tuple(int(c) for c in a.channels.split(","))
    model = UNet2D(channels)
    if a.init:
        model.load_state_dict(torch.load(a.init))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(a.seed)
    img, tgt = load_set(a.train)
    vimg, vtgt = load_set(a.val)
    step, best, history = 0, -1.0, []
    ck = out / "last.pt"
    if a.resume and ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        g.set_state(st["gen"])
        step, best, history = st["step"], st["best"], st["history"]
    t0 = time.time()
    log = open(out / "train.log", "a")
    run_loss = []
    while step < a.steps:
        idx = torch.randint(0, len(img), (a.batch,), generator=g)
        x, t = augment(*as_float(img[idx], tgt[idx]), g, a.crop)
        loss = loss_fn(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        run_loss.append(float(loss.detach()))
        if step % 25 == 0:
            print(f"step {step} loss {np.mean(run_loss[-25:]):.4f} {time.time() - t0:.0f}s", file=log, flush=True)
        if step % a.val_every == 0 or step == a.steps:
            ev = evaluate(model, vimg, vtgt)
            ev["step"] = step
            history.append(ev)
            print(json.dumps(ev), file=log, flush=True)
            if ev["dice_global"] > best:
                best = ev["dice_global"]
                torch.save(model.state_dict(), out / "best.pt")
        if step % a.ckpt_every == 0 or step == a.steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "gen": g.get_state(), "step": step, "best": best, "history": history}, ck)
    model.load_state_dict(torch.load(out / "best.pt"))
    export_onnx(model, out / "model.onnx")
    info = {"mode": a.mode, "seed": a.seed, "steps": a.steps, "batch": a.batch, "crop": a.crop, "lr": a.lr,
            "channels": list(channels), "n_params": n_params(model),
            "train_set": ",".join(Path(p).name for p in a.train.split(",")),
            "val_set": ",".join(Path(p).name for p in a.val.split(",")),
            "init": a.init and str(Path(a.init).parent.name + "/" + Path(a.init).name), "best_val_dice": best, "history": history,
            "train_seconds": round(time.time() - t0)}
    (out / "run.json").write_text(json.dumps(info, indent=1))
    print("done", json.dumps({k: v for k, v in info.items() if k != "history"}), file=log, flush=True)


if __name__ == "__main__":
    main()
