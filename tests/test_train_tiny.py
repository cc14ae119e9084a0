"""The training script of the offline ``tiny_shapes`` model (``scripts/train_tiny_sam.py``).

A few steps on one thread: the script must write weights that load into the shipped
architecture, be deterministic for a seed, continue from its checkpoint exactly, and its data
augmentation must move images and masks together.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sam_widget.data import shapes_scene
from sam_widget.engine.models import build_sam
from sam_widget.engine.tiny import TINY_SHAPES_CONFIG

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train_tiny_sam.py"


@pytest.fixture(scope="module")
def train():
    # imported by name (not from a file spec) so that --procs' spawned processes can unpickle
    # its functions: spawned children get this process's sys.path
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
    return importlib.import_module(SCRIPT.stem)


def _run(train, tmp: Path, *extra: str) -> dict[str, torch.Tensor]:
    out = tmp / "w.pt"
    train.main([
        "--steps", "4", "--batch", "1", "--objects", "2", "--reuse", "2", "--threads", "1",
        "--freeze-encoder", "2", "--warmup", "2", "--out", str(out),
        "--checkpoint", str(tmp / "ckpt.pt"), *extra,
    ])
    return torch.load(out, weights_only=True)


def test_a_short_run_writes_fp16_weights_that_load_into_the_shipped_architecture(train, tmp_path):
    state = _run(train, tmp_path, "--snapshot-every", "2")
    sam = build_sam(TINY_SHAPES_CONFIG)
    sam.load_state_dict({k: v.float() for k, v in state.items()})
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    # training moved the decoder away from its seeded initialisation
    torch.manual_seed(0)
    init = build_sam(TINY_SHAPES_CONFIG).state_dict()
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert not torch.equal(state[key].float(), init[key].half().float())
    assert (tmp_path / "w_step2.pt").is_file() and (tmp_path / "w_step4.pt").is_file()


def test_the_same_seed_gives_the_same_weights_and_resuming_continues_exactly(train, tmp_path):
    first = _run(train, tmp_path / "a")
    again = _run(train, tmp_path / "b")
    assert all(torch.equal(first[k], again[k]) for k in first)

    # stop after 2 steps, then resume to 4: identical to the straight run
    (tmp_path / "c").mkdir()
    train.main([
        "--steps", "4", "--batch", "1", "--objects", "2", "--reuse", "2", "--threads", "1",
        "--freeze-encoder", "2", "--warmup", "2", "--out", str(tmp_path / "c" / "w.pt"),
        "--checkpoint", str(tmp_path / "c" / "ckpt.pt"), "--stop-after", "2",
    ])
    resumed = _run(train, tmp_path / "c", "--resume")
    ck = torch.load(tmp_path / "c" / "ckpt.pt", weights_only=True)
    assert ck["step"] == 4
    assert all(torch.equal(first[k], resumed[k]) for k in first)


def test_augmentation_moves_images_and_masks_together(train):
    scene = shapes_scene(5, (64, 64), max_shapes=4)
    images, masks = scene.image[None], [scene.masks]
    seen = set()
    for s in range(40):
        rng = np.random.default_rng(s)
        aug_images, aug_masks = train.augment(images, masks, rng)
        assert aug_images.shape == images.shape and aug_masks[0].shape == masks[0].shape
        # every object keeps its pixels: same area, and the same colours up to a channel permutation
        for m, am in zip(masks[0], aug_masks[0]):
            assert m.sum() == am.sum()
            before = np.sort(images[0][m].mean(0))
            after = np.sort(aug_images[0][am].mean(0))
            np.testing.assert_allclose(before, after, rtol=1e-6)
        seen.add(aug_masks[0].tobytes())
    assert len(seen) == 8  # all flips and rotations of the square occur



def _depth(mask: np.ndarray, x: int, y: int) -> int:
    """Chebyshev distance from pixel (x, y) to the nearest background pixel or the frame."""
    h, w = mask.shape
    for r in range(max(h, w)):
        y0, y1, x0, x1 = y - r, y + r + 1, x - r, x + r + 1
        if y0 < 0 or x0 < 0 or y1 > h or x1 > w or not mask[y0:y1, x0:x1].all():
            return r
    return max(h, w)


@pytest.mark.parametrize("scale", [1, 4])
def test_deep_clicks_stay_inside_their_region_and_lean_towards_its_interior(train, scale):
    side = 256 // scale
    masks = torch.from_numpy(shapes_scene(11, (side, side), max_shapes=6).masks)
    uniform, deep = [], []
    for s in range(30):
        for store, p in ((uniform, 0.0), (deep, 1.0)):
            pts = train.sample_deep(masks, np.random.default_rng(s), p, scale)
            for m, (x, y) in zip(masks.numpy(), pts.long().tolist()):
                col, row = x // scale, y // scale
                assert m[row, col], "a click must land inside its region"
                assert 0 <= x < 256 and 0 <= y < 256
                store.append(_depth(m, col, row))
    assert np.mean(deep) > 1.5 * np.mean(uniform)


def test_the_batched_fused_decoder_equals_mask_decoder_forward(train):
    from segment_anything.modeling.transformer import Attention

    original = Attention.forward
    torch.manual_seed(3)
    sam = build_sam(TINY_SHAPES_CONFIG).eval()
    train.check_decode(sam)  # raises on a mismatch
    grid = TINY_SHAPES_CONFIG.embedding_size
    emb = torch.randn(2, TINY_SHAPES_CONFIG.prompt_embed_dim, grid, grid)
    pts = (torch.rand(2, 3, 2) * 256, torch.tensor([[1, 0, 1], [1, 1, -1]]))
    sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
    with torch.no_grad():
        got, iou = train.decode(sam, emb, sparse, dense, True)
        for i in range(2):  # MaskDecoder.forward: one image, its own prompt
            ref, ref_iou = sam.mask_decoder(emb[i : i + 1], sam.prompt_encoder.get_dense_pe(),
                                            sparse[i : i + 1], dense[i : i + 1], multimask_output=True)
            torch.testing.assert_close(got[i : i + 1], ref, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(iou[i : i + 1], ref_iou, atol=1e-5, rtol=1e-4)
        # the two prompts give different masks: the comparison above is not vacuous
        assert not torch.allclose(got[0], got[1], atol=1e-3)
    assert Attention.forward is original  # the fused attention is undone after decoding



def test_focal_alpha_sets_what_a_missed_object_pixel_costs_against_a_false_positive(train, monkeypatch):
    gt = torch.zeros(1, 2, 2)
    gt[0, 0, 0] = 1.0
    # correct pixels at +-30 cost nothing; the one wrong pixel is wrong by the same margin
    missed = torch.full((1, 2, 2), -30.0)
    missed[0, 0, 0] = -3.0  # the object pixel is predicted as background
    extra = torch.where(gt > 0, 30.0, -30.0)
    extra[0, 1, 1] = 3.0  # one background pixel predicted as object
    fn, fp = train.focal_loss(missed, gt), train.focal_loss(extra, gt)
    assert fn.item() == pytest.approx(fp.item(), rel=1e-4)  # default alpha 0.5: both cost the same
    monkeypatch.setattr(train, "FOCAL_ALPHA", 0.75)  # what --focal-alpha 0.75 sets
    missed_cost, extra_cost = train.focal_loss(missed, gt).item(), train.focal_loss(extra, gt).item()
    assert missed_cost == pytest.approx(3 * extra_cost, rel=1e-4)  # 0.75 against 0.25


def test_focal_alpha_reaches_the_loss_of_a_run_and_the_next_run_gets_the_default_again(train, tmp_path):
    default = _run(train, tmp_path / "a")
    other = _run(train, tmp_path / "b", "--focal-alpha", "0.75")
    assert train.FOCAL_ALPHA == 0.75
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert not torch.equal(default[key], other[key])
    again = _run(train, tmp_path / "c")
    assert train.FOCAL_ALPHA == train.DEFAULT_FOCAL_ALPHA
    assert all(torch.equal(default[k], again[k]) for k in default)


def _training_boxes(train, monkeypatch, noise: float) -> torch.Tensor:
    """The boxes one box-prompted training step gives the prompt encoder, for 200 copies of
    a 40 x 40 square whose true box is (100, 100, 139, 139)."""
    monkeypatch.setattr(train, "BOX_NOISE", noise)  # what --box-noise sets
    torch.manual_seed(0)
    sam = build_sam(TINY_SHAPES_CONFIG)
    seen = []
    forward = sam.prompt_encoder.forward

    def spy(points, boxes, masks):
        seen.append(boxes.clone())
        return forward(points, boxes, masks)

    monkeypatch.setattr(sam.prompt_encoder, "forward", spy)
    gt = torch.zeros(200, 256, 256)
    gt[:, 100:140, 100:140] = 1.0
    emb = torch.randn(1, TINY_SHAPES_CONFIG.prompt_embed_dim, 16, 16)
    with torch.no_grad():
        train.train_batch(sam, emb, gt, torch.zeros(200, dtype=torch.long), np.random.default_rng(0), 0,
                          kind=1)
    (boxes,) = seen
    return boxes


def test_box_noise_sets_how_far_the_training_boxes_stray_from_the_true_box(train, monkeypatch):
    true = torch.tensor([100.0, 100.0, 139.0, 139.0])
    exact = _training_boxes(train, monkeypatch, 0.0)
    assert torch.equal(exact, true.expand(200, 4))
    for noise in (0.035, 0.1):
        err = _training_boxes(train, monkeypatch, noise) - true
        assert err.abs().max() <= 20  # the 20-px cap (0.1 x 39 px: not reached in practice)
        assert err.std().item() / 39 == pytest.approx(noise, rel=0.1)  # 800 draws
    # a noise as large as the side (std 39 px) is cut at the 20-px cap, on both sides
    err = _training_boxes(train, monkeypatch, 1.0) - true
    assert err.max().item() == 20 and err.min().item() == -20


def test_box_noise_reaches_a_run_and_the_next_run_gets_the_default_again(train, tmp_path):
    boxes_only = ("--prompt-mix", "0,1,0")
    default = _run(train, tmp_path / "a", *boxes_only)
    other = _run(train, tmp_path / "b", *boxes_only, "--box-noise", "0.3")
    assert train.BOX_NOISE == 0.3
    assert any(not torch.equal(default[k], other[k]) for k in default)
    _run(train, tmp_path / "c")
    assert train.BOX_NOISE == train.DEFAULT_BOX_NOISE


@pytest.mark.parametrize("bad", [["--prompt-mix", "a,b,c"], ["--prompt-mix", "0.5,0.5"],
                                 ["--prompt-mix", "1.5,-0.5,0"], ["--reuse", "0"], ["--procs", "0"],
                                 ["--focal-alpha", "1"], ["--focal-alpha", "0"], ["--focal-alpha", "x"],
                                 ["--box-noise", "-0.1"], ["--box-noise", "2"]])
def test_bad_options_stop_with_one_message_before_anything_changes(train, tmp_path, capsys, bad):
    before = (train.CONFIG, train.DEEP_CLICKS, train.PROMPT_MIX, train.FOCAL_ALPHA, train.BOX_NOISE)
    with pytest.raises(SystemExit) as exc:
        train.main([*bad, "--out", str(tmp_path / "w.pt"), "--checkpoint", str(tmp_path / "ck.pt")])
    assert exc.value.code == 2
    assert bad[0] in capsys.readouterr().err
    assert (train.CONFIG, train.DEEP_CLICKS, train.PROMPT_MIX, train.FOCAL_ALPHA, train.BOX_NOISE) == before
    assert not any(tmp_path.iterdir())  # no weights, no checkpoint


def _average_in_process(rank: int, out: Path) -> None:
    """Process ``rank`` of 2: gradients that differ per process, one missing on rank 0 and
    one missing everywhere; writes what ``average_gradients`` made of them."""
    train = importlib.import_module(SCRIPT.stem)
    a, b, c = (torch.nn.Parameter(torch.zeros(2, 3)) for _ in range(3))
    a.grad = torch.full((2, 3), float(rank + 1))  # 1 and 2
    b.grad = None if rank == 0 else torch.full((2, 3), 4.0)
    elapsed = train.average_gradients([a, b, c], 2, 10.0 * (rank + 1))
    torch.save({"a": a.grad, "b": b.grad, "c": c.grad, "elapsed": elapsed}, out / f"rank{rank}.pt")


def test_two_processes_average_their_gradients_and_share_one_clock(train, tmp_path):
    train.run_processes(_average_in_process, 2, tmp_path)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["a"], torch.full((2, 3), 1.5))  # (1 + 2) / 2
        torch.testing.assert_close(got["b"], torch.full((2, 3), 2.0))  # (0 + 4) / 2: missing = zero
        assert got["c"] is None  # no gradient anywhere: the optimiser still skips it
        assert got["elapsed"] == pytest.approx(15.0)  # both follow the mean clock


def test_each_training_process_gets_its_own_images(train):
    rank0 = train.ShapesBatches(0, 2, 3, rank=0, procs=2)[1]
    rank1 = train.ShapesBatches(0, 2, 3, rank=1, procs=2)[1]
    assert rank0[0] == rank1[0] == 1
    # batch j=1 of rank r holds seeds (j * procs + r) * batch + i
    assert np.array_equal(rank1[1][0], shapes_scene(6, (256, 256)).image)
    assert np.array_equal(rank0[1][1], shapes_scene(5, (256, 256)).image)
    assert not np.array_equal(rank0[1], rank1[1])
    with pytest.raises(ValueError, match="evaluation seeds"):
        train.ShapesBatches(99, 4, 2_000_000, rank=0, procs=2)


def test_a_two_process_run_is_deterministic_and_differs_from_one_process(train, tmp_path):
    two = _run(train, tmp_path / "a", "--procs", "2")
    again = _run(train, tmp_path / "b", "--procs", "2")
    one = _run(train, tmp_path / "c")
    assert all(torch.equal(two[k], again[k]) for k in two)
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert not torch.equal(two[key], one[key])  # twice the images per step: other gradients
    assert torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)["step"] == 4
    sam = build_sam(TINY_SHAPES_CONFIG)
    sam.load_state_dict({k: v.float() for k, v in two.items()})
