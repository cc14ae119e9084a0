#!/usr/bin/env python
"""Train the offline ``tiny_shapes`` SAM from scratch on procedural shapes (CPU, minutes).

    python scripts/train_tiny_sam.py                      # writes sam_widget/weights/tiny_shapes.pt
    python scripts/train_tiny_sam.py --resume             # continue from the checkpoint

The shipped weights come from ``python scripts/train_tiny_sam.py --threads 1 --max-minutes 29``:
5000 steps (20 000 images, 80 000 prompt sequences) in 23.4 minutes on the shared 2-core CPU
(one thread: there, under other developers' load, two OpenMP threads were 3-7x slower).
It ended by steps, not by the time budget; for about a tenth of the steps the clock was ahead
of the step count and set the learning rate (see ``--max-minutes``), so a rerun on a machine of
another speed gives slightly different weights (use no ``--max-minutes`` for exact reruns).

Training follows the SAM paper's recipe, scaled down:

* Data: every step draws fresh images ``sam_widget.data.shapes_scene(seed)`` with image seeds
  ``seed * 10_000_000 + step * batch + i`` (all below ``sam_widget.evaluate.EVAL_SEED_OFFSET``,
  so evaluation images are never trained on), and up to ``--objects`` objects per image.
* Prompts: one kind per step (so prompts batch without padding tokens): a single positive point
  drawn uniformly inside each object (50 %; 3 candidate masks, the loss and gradient only on the
  best candidate: the "min over candidates" rule), the object's box jittered by Gaussian noise
  of 7 % of its side, at most 20 px (40 %), or 1-2 positive points inside plus one negative
  outside (10 %). Then ``--clicks`` follow-up rounds: a click drawn uniformly from the error
  region of the previous prediction (positive where the object was missed, negative on a false
  positive), given together with the earlier prompts and with the previous best low-res logits
  as ``mask_input``; these multi-prompt rounds use the single-output mask, as SAM does.
* Loss per round: ``w * focal + dice`` on the low-res logits (64 x 64) against the area-averaged
  target, with focal gamma 2 and alpha 0.75 on foreground pixels, plus the MSE between the IoU
  head and the true IoU of every candidate. ``w`` is SAM's 20, reached after a linear ramp from
  1 over ``--focal-ramp`` steps: with 20 from the start (and with alpha 0.25) the tiny model
  collapsed to empty masks and stayed there for hundreds of steps.
* Curriculum: for the first ``--freeze-encoder`` steps only the prompt encoder and the mask
  decoder learn, on the features of the randomly initialised image encoder; then the encoder
  joins at ``--encoder-lr-scale`` times the learning rate. Trained jointly from the start, the
  tiny model settled on prompt-independent masks ("all objects", or nothing) and did not leave
  them within the time budget; with the encoder frozen first, the decoder learns to use the
  prompts within ~200 steps.
* AdamW (weight decay 0.05 on matrices), linear warm-up then cosine decay; checkpoints every
  ``--save-every`` steps (model, optimiser, scheduler, step, time), so ``--resume`` continues.
* The decoder runs batched over all prompts of a step (:func:`decode`, checked at start-up
  against ``MaskDecoder.forward``).

Every random choice is a function of ``(--seed, step)``: without ``--max-minutes`` the same
command gives the same weights (up to floating-point summation order, which depends on the
number of threads). With ``--max-minutes`` the schedule follows the clock (see its help).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sam_widget.data import shapes_scene  # noqa: E402
from sam_widget.engine.models import build_sam  # noqa: E402
from sam_widget.engine.tiny import TINY_SHAPES_CONFIG, TINY_SHAPES_WEIGHTS  # noqa: E402
from sam_widget.evaluate import EVAL_SEED_OFFSET  # noqa: E402

IMG = TINY_SHAPES_CONFIG.img_size
FOCAL_ALPHA = 0.75  # weight of foreground pixels; 0.25 collapsed to empty masks early on


class ShapesBatches(Dataset):
    """Item ``step`` = the ``batch`` images of that training step (images, masks, seeds)."""

    def __init__(self, seed: int, batch: int, steps: int) -> None:
        self.seed, self.batch, self.steps = seed, batch, steps
        last = seed * 10_000_000 + steps * batch
        if steps * batch >= 10_000_000 or last >= EVAL_SEED_OFFSET:
            raise ValueError("Training image seeds would reach the evaluation seeds.")

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int):
        scenes = [
            shapes_scene(self.seed * 10_000_000 + step * self.batch + i, (IMG, IMG))
            for i in range(self.batch)
        ]
        images = np.stack([s.image for s in scenes])
        return step, images, [s.masks for s in scenes]


def _as_is(item):
    return item


def focal_loss(logits: torch.Tensor, gt: torch.Tensor, alpha: float | None = None, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask sigmoid focal loss, mean over pixels. logits, gt: (..., H, W)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    p_t = p * gt + (1 - p) * (1 - gt)
    loss = ce * (1 - p_t).pow(gamma)
    alpha = FOCAL_ALPHA if alpha is None else alpha
    loss = (alpha * gt + (1 - alpha) * (1 - gt)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid().flatten(-2)
    g = gt.flatten(-2)
    return 1 - (2 * (p * g).sum(-1) + 1) / (p.sum(-1) + g.sum(-1) + 1)


def true_iou(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    pred = (logits > 0).flatten(-2)
    g = gt.flatten(-2) > 0.5
    inter = (pred & g).sum(-1).float()
    union = (pred | g).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def sample_in(masks: torch.Tensor, rng: np.random.Generator, scale: int = 1) -> torch.Tensor:
    """One (x, y) pixel drawn uniformly from each (K, h, w) mask (anywhere if a mask is empty).

    With ``scale > 1`` the masks are on a grid ``scale`` times coarser than the image and the
    pixel is drawn uniformly inside the chosen cell.
    """
    k, h, w = masks.shape
    flat = masks.reshape(k, -1).numpy()
    out = np.empty((k, 2), dtype=np.float32)
    for i in range(k):
        idx = np.flatnonzero(flat[i])
        j = int(rng.choice(idx)) if idx.size else int(rng.integers(h * w))
        out[i] = (j % w) * scale + rng.integers(scale), (j // w) * scale + rng.integers(scale)
    return torch.from_numpy(out)


def mask_boxes(gt: torch.Tensor) -> torch.Tensor:
    """XYXY boxes (inclusive max pixel) of (K, H, W) masks."""
    rows = gt.any(2)
    cols = gt.any(1)
    ar = torch.arange(gt.shape[-1])
    big = gt.shape[-1] * 10
    x0 = torch.where(cols, ar, big).min(1).values
    x1 = torch.where(cols, ar, -1).max(1).values
    y0 = torch.where(rows, ar, big).min(1).values
    y1 = torch.where(rows, ar, -1).max(1).values
    return torch.stack([x0, y0, x1, y1], 1).float()


def decode(sam, src_emb: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool):
    """``sam.mask_decoder(...)`` for N prompts on N (possibly different) images at once.

    ``MaskDecoder.forward`` takes one image and N prompts (it repeats the image embedding N
    times); here ``src_emb`` is already (N, C, h, w), one embedding per prompt, so that a whole
    training batch is one call. The computation is otherwise ``MaskDecoder.predict_masks``
    step by step, with the same modules; :func:`check_decode` verifies they agree.
    """
    dec = sam.mask_decoder
    n = sparse.shape[0]
    out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], 0)[None].expand(n, -1, -1)
    tokens = torch.cat((out_tokens, sparse), 1)
    src = src_emb + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = dec.transformer(src, pos, tokens)
    iou_out = hs[:, 0]
    mask_out = hs[:, 1 : 1 + dec.num_mask_tokens]
    up = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], 1)
    b, c, h, w = up.shape
    masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
    iou = dec.iou_prediction_head(iou_out)
    sl = slice(1, None) if multimask else slice(0, 1)
    return masks[:, sl], iou[:, sl]


@torch.no_grad()
def check_decode(sam) -> None:
    """Raise if :func:`decode` differs from segment_anything's own ``MaskDecoder.forward``."""
    g = torch.Generator().manual_seed(0)
    grid = TINY_SHAPES_CONFIG.embedding_size
    emb = torch.randn(1, TINY_SHAPES_CONFIG.prompt_embed_dim, grid, grid, generator=g)
    pts = (torch.rand(3, 2, 2, generator=g) * IMG, torch.tensor([[1, 0], [1, 1], [0, 1]]))
    sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
    for mm in (True, False):
        ref = sam.mask_decoder(emb, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=mm)
        got = decode(sam, emb.expand(3, -1, -1, -1), sparse, dense, mm)
        for r, o in zip(ref, got):
            if not torch.allclose(r, o, atol=1e-5, rtol=1e-4):
                raise RuntimeError("batched decode differs from MaskDecoder.forward")


def train_batch(
    sam, emb, gt, img_index, rng: np.random.Generator, clicks: int, focal_weight: float = 20.0
):
    """Loss of one step's prompt sequences.

    emb: (B, C, h, w) image embeddings; gt: (N, H, W) float masks; img_index: (N,) image of
    each mask. One prompt kind per step (so that prompts batch without padding tokens).
    The loss is computed on the low-resolution logits (4x the embedding grid: 64 px) against
    the area-averaged (soft) target, which is what bilinear upsampling of the logits needs.
    """
    k = gt.shape[0]
    gt_bool = gt > 0.5
    low_size = 4 * TINY_SHAPES_CONFIG.embedding_size
    scale = IMG // low_size
    gt_low = F.avg_pool2d(gt[:, None], scale)[:, 0] if scale > 1 else gt
    src_emb = emb[img_index]
    kind = rng.choice(3, p=[0.5, 0.4, 0.1])  # 0: one point, 1: box, 2: several points
    coords = torch.zeros(k, 0, 2)
    labels = torch.zeros(k, 0, dtype=torch.int)
    boxes = None
    if kind == 0:
        coords = sample_in(gt_bool, rng)[:, None]
        labels = torch.ones(k, 1, dtype=torch.int)
    elif kind == 1:
        b = mask_boxes(gt_bool)
        side = torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).repeat(1, 2)
        noise = torch.from_numpy(rng.normal(0, 0.07, size=(k, 4)).astype(np.float32)) * side
        boxes = (b + noise.clamp(-20, 20)).clamp(0, IMG - 1)
    else:
        n_pos = int(rng.integers(1, 3))
        pos = torch.stack([sample_in(gt_bool, rng) for _ in range(n_pos)], 1)
        neg = sample_in(~gt_bool, rng)[:, None]
        coords = torch.cat([pos, neg], 1)
        labels = torch.cat([torch.ones(k, n_pos, dtype=torch.int), torch.zeros(k, 1, dtype=torch.int)], 1)

    mask_input = None
    total = emb.new_zeros(())
    stats = []
    ar = torch.arange(k)
    for rnd in range(1 + clicks):
        multimask = kind == 0 and rnd == 0
        pts = (coords, labels) if coords.shape[1] else None
        sparse, dense = sam.prompt_encoder(points=pts, boxes=boxes, masks=mask_input)
        low, iou_pred = decode(sam, src_emb, sparse, dense, multimask)
        g = gt_low[:, None].expand_as(low)
        mask_loss = focal_weight * focal_loss(low, g) + dice_loss(low, g)  # (K, C)
        with torch.no_grad():
            iou_true = true_iou(low, g)
        best = mask_loss.argmin(1)  # C == 1 -> 0
        total = total + mask_loss[ar, best].mean() + F.mse_loss(iou_pred, iou_true)
        stats.append(iou_true[ar, best].mean().item())
        if rnd == clicks:
            break
        mask_input = low[ar, best][:, None].detach()
        pred = low[ar, best].detach() > 0
        err = pred ^ (gt_low > 0.5)
        new = sample_in(err, rng, scale)
        lab = gt_bool[ar, new[:, 1].long(), new[:, 0].long()].int()
        coords = torch.cat([coords, new[:, None]], 1)
        labels = torch.cat([labels, lab[:, None]], 1)
    return total / (1 + clicks), stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=4, help="images per step")
    ap.add_argument("--objects", type=int, default=4, help="objects (prompt sequences) per image")
    ap.add_argument("--clicks", type=int, default=2, help="follow-up error clicks per sequence")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--freeze-encoder", type=int, default=600,
                    help="steps during which only the prompt encoder and mask decoder learn, "
                         "on the features of the (random) initial image encoder")
    ap.add_argument("--encoder-lr-scale", type=float, default=1.0,
                    help="learning rate of the image encoder relative to --lr")
    ap.add_argument("--focal-ramp", type=int, default=300,
                    help="steps over which the focal weight grows from 1 to 20 (0: always 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--out", type=Path, default=TINY_SHAPES_WEIGHTS)
    ap.add_argument("--checkpoint", type=Path, default=REPO / "tmp" / "tiny_shapes_ckpt.pt")
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="time budget: the learning-rate schedule follows max(step / steps, "
                         "elapsed / budget) and training stops (and saves) when it is spent. "
                         "Makes the weights depend on the machine's speed; omit for "
                         "step-exact reproducibility")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sam = build_sam(TINY_SHAPES_CONFIG).train()
    check_decode(sam)
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for n, p in sam.named_parameters():
        is_decay = p.ndim >= 2 and "pos" not in n
        groups.setdefault((n.startswith("image_encoder."), is_decay), []).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": ps, "weight_decay": 0.05 if dec else 0.0,
             "lr": args.lr * (args.encoder_lr_scale if enc else 1.0)}
            for (enc, dec), ps in sorted(groups.items())
        ],
        lr=args.lr,
    )
    clock = {"elapsed": 0.0}

    def progress(s: int) -> float:
        # fraction of the run done: by steps, or by time when a time budget is given
        done = s / args.steps
        if args.max_minutes is not None:
            done = max(done, clock["elapsed"] / (args.max_minutes * 60))
        return min(1.0, done)

    def lr_factor(s: int) -> float:
        return min(1.0, (s + 1) / args.warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress(s))))

    def encoder_lr_factor(s: int) -> float:
        # the encoder stays frozen for --freeze-encoder steps, then warms up over --warmup steps
        if s < args.freeze_encoder:
            return 0.0
        return lr_factor(s) * min(1.0, (s - args.freeze_encoder + 1) / args.warmup)

    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        [encoder_lr_factor if enc else lr_factor for (enc, _dec) in sorted(groups)],
    )
    start, elapsed_before = 0, 0.0
    if args.resume and args.checkpoint.is_file():
        ck = torch.load(args.checkpoint, weights_only=True)
        sam.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start, elapsed_before = int(ck["step"]), float(ck["elapsed"])
        print(f"resumed at step {start} ({elapsed_before / 60:.1f} min trained)")
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)

    data = ShapesBatches(args.seed, args.batch, args.steps)
    loader = DataLoader(
        torch.utils.data.Subset(data, range(start, args.steps)),
        batch_size=None,
        collate_fn=_as_is,
        num_workers=1,
        prefetch_factor=4,
        persistent_workers=False,
    )
    mean = torch.tensor(TINY_SHAPES_CONFIG.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(TINY_SHAPES_CONFIG.pixel_std).view(1, 3, 1, 1)

    def save_checkpoint(step: int, elapsed: float) -> None:
        tmp = args.checkpoint.with_suffix(".tmp")
        torch.save(
            {"model": sam.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
             "step": step, "elapsed": elapsed},
            tmp,
        )
        tmp.replace(args.checkpoint)

    t0 = time.perf_counter()
    ema: dict[str, float] = {}
    step = start - 1  # the last finished step, so that step + 1 steps are done
    bar = tqdm(loader, total=args.steps - start, initial=0, desc="train tiny_shapes", dynamic_ncols=True)
    for step, images, masks in bar:
        rng = np.random.default_rng((args.seed, step))
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - mean) / std
        if step < args.freeze_encoder:
            with torch.no_grad():
                emb = sam.image_encoder(x)
        else:
            emb = sam.image_encoder(x)
        gts, index = [], []
        for b, m in enumerate(masks):
            sel = np.sort(rng.permutation(len(m))[: args.objects])
            gts.append(m[sel])
            index += [b] * len(sel)
        gt = torch.from_numpy(np.concatenate(gts)).float()
        fw = 20.0 if args.focal_ramp <= 0 else 1.0 + 19.0 * min(1.0, step / args.focal_ramp)
        loss, rounds = train_batch(sam, emb, gt, torch.tensor(index), rng, args.clicks, fw)
        clock["elapsed"] = elapsed_before + time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        opt.step()
        sched.step()
        r = rounds
        for key, v in [("loss", loss.item()), ("iou1", r[0]), ("iouN", r[-1])]:
            ema[key] = v if key not in ema else 0.97 * ema[key] + 0.03 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()} | {"lr": f"{sched.get_last_lr()[0]:.1e}"})
        elapsed = elapsed_before + time.perf_counter() - t0
        if (step + 1) % args.save_every == 0:
            save_checkpoint(step + 1, elapsed)
        if args.max_minutes is not None and elapsed > args.max_minutes * 60:
            print(f"\ntime budget reached at step {step + 1}")
            break
    elapsed = elapsed_before + time.perf_counter() - t0
    save_checkpoint(step + 1, elapsed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    half = {k: v.detach().half() if v.is_floating_point() else v for k, v in sam.state_dict().items()}
    torch.save(half, args.out)
    print(f"trained {step + 1} steps in {elapsed / 60:.1f} min; wrote {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
