"""Shared fixtures for the whole test suite.

Models
  * ``tiny_sam``   -- ``random_sam(TINY_TEST_CONFIG, seed=0)``: 128-px input, 16x16 embedding
    grid, 64x64 logits. Session-scoped and SHARED by every test: **never mutate it** (no
    in-place weight changes, no ``.to(...)``, no ``image_format`` changes, no training). If
    you need to change a model, build your own with ``random_sam(...)``; it costs ~20 ms.
    The fixture checks at the end of the session that the weights are unchanged and reports
    an error if not.
  * ``padded_sam`` -- ``random_sam(padded_test_config(), seed=0)``: 112-px input, 14x14 grid
    with 5x5 attention windows, so the windowed blocks pad the grid (14 -> 15) the way the
    official models do (64 -> 70). Same rules as ``tiny_sam``.

Precision
  * ``$SAM_WIDGET_PRECISION=fp32`` for the whole run (subprocesses inherit it): "auto" resolves
    to fp32 whatever the CPU. Tests of bf16 ask for it explicitly.

Threads
  * torch runs single-threaded in the test process (set ``SAM_WIDGET_TEST_TORCH_THREADS=N``
    to change): on this shared 2-core machine, OpenMP threads fighting other processes
    made small-model tests 3-6x slower and their timing erratic. Parity tests compare two
    computations in the same process, so they are unaffected by the thread count.
  * torch is imported lazily (by the model fixtures), so torch-free tests stay light.

Images
  * ``rng_image(h, w, channels=3, dtype=np.uint8, seed=0)`` -- a factory of deterministic
    random images (``channels=None`` gives ``H x W``); uint8/uint16 use the whole range,
    bool is random bits, float is in [0, 1].
  * ``sample_rgb`` -- a fresh 180 x 240 x 3 uint8 RGB synthetic scene (smooth background,
    a disc, a rectangle, a stripe): something with objects to click on, no file needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys

import numpy as np
import pytest

# precision="auto" means bf16 on CPUs with native bf16 (this project's machines) and fp32
# elsewhere. Tests of behaviour compare masks bit for bit with reference computations, so
# they pin "auto" to fp32: the same numbers on every machine. The bf16 path is tested where
# it is asked for explicitly (precision="bf16"), and test_precision.py tests the choice itself.
os.environ.setdefault("SAM_WIDGET_PRECISION", "fp32")


def limit_torch_threads() -> None:
    """Run torch with ``SAM_WIDGET_TEST_TORCH_THREADS`` (default 1) intra-op threads."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(os.environ.get("SAM_WIDGET_TEST_TORCH_THREADS", "1")))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    limit_torch_threads()  # if a test module imported torch at collection


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_per_module():
    limit_torch_threads()  # again per module: a test may have changed it, or imported torch since


def padded_test_config():
    """A second small configuration: 112-px input, 14x14 grid, 5x5 attention windows.

    The grid is not a multiple of the window, so the windowed blocks pad (14 -> 15), as
    in the official models (64 -> 70).
    """
    from sam_widget.engine.models import TINY_TEST_CONFIG

    return dataclasses.replace(TINY_TEST_CONFIG, img_size=112, patch_size=8, window_size=5)


def weights_digest(sam) -> str:
    """Hex digest of every parameter and buffer of a model (to detect mutation)."""
    h = hashlib.sha256()
    for name, t in sam.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(str(getattr(sam, "image_format", "")).encode())
    return h.hexdigest()


def _shared_model(config):
    from sam_widget.engine.models import random_sam

    limit_torch_threads()
    sam = random_sam(config, seed=0)
    before = weights_digest(sam)
    yield sam
    assert weights_digest(sam) == before, (
        f"a test mutated the shared session model built from {config}; "
        "build a private one with random_sam(...) instead."
    )


@pytest.fixture(scope="session")
def tiny_sam():
    """``random_sam(TINY_TEST_CONFIG, seed=0)``, shared by the session. Do not mutate."""
    from sam_widget.engine.models import TINY_TEST_CONFIG

    yield from _shared_model(TINY_TEST_CONFIG)


@pytest.fixture(scope="session")
def padded_sam():
    """``random_sam(padded_test_config(), seed=0)`` (window padding), shared. Do not mutate."""
    yield from _shared_model(padded_test_config())


def make_image(h: int, w: int, channels: int | None = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A deterministic random image of shape ``(h, w)`` or ``(h, w, channels)``."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    if dtype.kind in "iu":
        hi = min(np.iinfo(dtype).max, 65535)
        return rng.integers(0, hi, size=shape, endpoint=True).astype(dtype)
    raise ValueError(f"make_image does not make {dtype} images.")


@pytest.fixture
def rng_image():
    """Factory ``rng_image(h, w, channels=3, dtype=np.uint8, seed=0)`` of random images."""
    return make_image


def make_sample_rgb() -> np.ndarray:
    h, w = 180, 240
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[..., 0] = 40 + 60 * xx / w
    img[..., 1] = 90 + 50 * yy / h
    img[..., 2] = 150 - 40 * xx / w
    disc = (xx - 70) ** 2 + (yy - 90) ** 2 < 40**2
    img[disc] = (220, 60, 40)
    rect = (xx > 140) & (xx < 210) & (yy > 40) & (yy < 130)
    img[rect] = (40, 160, 70)
    stripe = (yy > 150) & (yy < 160)
    img[stripe] = (250, 240, 90)
    return np.rint(img).astype(np.uint8)


@pytest.fixture
def sample_rgb() -> np.ndarray:
    """A fresh 180 x 240 x 3 uint8 RGB scene: a red disc centred at (x=70, y=90) r=40, a
    green rectangle x in (140, 210), y in (40, 130), a yellow stripe y in (150, 160)."""
    return make_sample_rgb()


@pytest.fixture
def comm():
    """Everything the widgets' canvases send to the browser, recorded (``RecordingComm``):
    no kernel or browser needed."""
    from sam_widget.testing import RecordingComm

    with RecordingComm.install() as rec:
        yield rec


@pytest.fixture(scope="module")
def shapes_seg():
    """A ``tiny_shapes`` Segmenter (CPU, precision per ``$SAM_WIDGET_PRECISION``), one per test
    module: it holds an image, so modules do not share it."""
    from sam_widget import Segmenter

    limit_torch_threads()
    return Segmenter.from_pretrained("tiny_shapes", device="cpu")
