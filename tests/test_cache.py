"""The embedding cache: an image is encoded once per model, in memory and on disk.

Every test counts ``seg.stats["encoder_calls"]``: a hit is an answer with no encoding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from sam_widget import Segmenter
from sam_widget.engine import cache as cache_module
from sam_widget.engine.cache import CacheWarning, DiskCache, MemoryLRU, image_key
from sam_widget.engine.models import random_sam

from conftest import make_image

PROMPT = dict(points=[[10.5, 20.25], [40, 33]], labels=[1, 0])


def embedding_bytes(sam) -> int:
    """Bytes of one image embedding of ``sam`` (float32, C x g x g)."""
    g = sam.prompt_encoder.image_embedding_size[0]
    return 4 * sam.prompt_encoder.embed_dim * g * g


def same_prediction(a, b) -> bool:
    return (
        np.array_equal(a.masks, b.masks)
        and np.array_equal(a.scores, b.scores)
        and np.array_equal(a.logits, b.logits)
    )


def reference(sam, image):
    """What SamPredictor answers for PROMPT on ``image`` (masks, scores, logits)."""
    p = SamPredictor(sam)
    p.set_image(image)
    return p.predict(np.asarray(PROMPT["points"], float), np.asarray(PROMPT["labels"]))


def assert_matches_reference(pred, ref):
    assert np.array_equal(pred.masks, ref[0])
    assert np.array_equal(pred.scores, ref[1])
    assert np.array_equal(pred.logits, ref[2])


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.npz"))


@pytest.fixture
def images():
    return [make_image(60, 80, seed=s) for s in (101, 102, 103)]


# ---------------------------------------------------------------- memory
def test_setting_a_cached_image_again_does_no_encoding(tiny_sam, images):
    a, b, _ = images
    seg = Segmenter(tiny_sam, exact=True)
    seg.set_image(a)
    first = seg.predict(**PROMPT)
    seg.set_image(b)
    assert seg.stats["encoder_calls"] == 2 and seg.stats["memory_hits"] == 0
    seg.set_image(a.copy())  # equal pixels, another array
    assert seg.stats["encoder_calls"] == 2 and seg.stats["memory_hits"] == 1
    assert same_prediction(seg.predict(**PROMPT), first)


def test_memory_cache_is_bounded_in_bytes_and_evicts_least_recently_used(tiny_sam, images):
    a, b, c = images
    seg = Segmenter(tiny_sam, memory_cache_bytes=2 * embedding_bytes(tiny_sam) + 100)  # room for two

    def calls_after(image):
        seg.set_image(image)
        return seg.stats["encoder_calls"]

    assert [calls_after(x) for x in (a, b)] == [1, 2]
    assert calls_after(a) == 2  # hit; a is now the most recently used
    assert calls_after(c) == 3  # evicts b, the least recently used
    assert calls_after(a) == 3  # a survived
    assert calls_after(b) == 4  # b was evicted
    assert seg.stats["memory_hits"] == 2


def test_memory_cache_of_zero_bytes_never_hits(tiny_sam, images):
    seg = Segmenter(tiny_sam, memory_cache_bytes=0)
    for _ in range(2):
        seg.set_image(images[0])
    assert seg.stats["encoder_calls"] == 2 and seg.stats["memory_hits"] == 0


def test_memory_lru_accounting():
    lru = MemoryLRU(25)
    lru.put("a", "A", 10)
    lru.put("b", "B", 10)
    assert lru.get("a") == "A"  # a becomes most recent
    lru.put("c", "C", 10)  # 30 > 25: evicts b
    assert "b" not in lru and lru.get("b") is None
    assert lru.get("a") == "A" and lru.get("c") == "C" and lru.nbytes == 20
    lru.put("a", "A2", 5)  # replacing an entry updates its size
    assert lru.get("a") == "A2" and lru.nbytes == 15
    lru.put("huge", "H", 26)  # larger than the bound: not kept, and evicts nothing
    assert "huge" not in lru and len(lru) == 2 and lru.nbytes == 15
    lru.clear()
    assert len(lru) == 0 and lru.nbytes == 0
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError):
            MemoryLRU(bad)


def test_image_key_is_pixels_shape_and_dtype():
    a = make_image(4, 6, seed=1)
    assert image_key(a) == image_key(a.copy())
    assert image_key(a) == image_key(np.asfortranarray(a))  # memory layout does not matter
    b = a.copy()
    b[3, 5, 2] ^= 1
    assert image_key(b) != image_key(a)  # one bit of one pixel
    assert image_key(a.reshape(6, 4, 3)) != image_key(a)  # same bytes, other shape
    assert image_key(a.view(np.int8)) != image_key(a)  # same bytes, other dtype


# ---------------------------------------------------------------- disk
def test_a_new_segmenter_with_the_same_weights_gets_a_disk_hit(tmp_path, images):
    a, b, _ = images
    first = Segmenter(random_sam(seed=0), cache_dir=tmp_path, exact=True)
    first.set_image(a)
    first.set_image(b)
    expected = first.predict(**PROMPT)
    files = entries(tmp_path)
    assert len(files) == 2  # one file per entry
    assert not [p for p in tmp_path.iterdir() if p not in files]  # no temp files left behind

    # another model object with the same weights (as after a restart)
    second = Segmenter(random_sam(seed=0), cache_dir=tmp_path, exact=True)
    second.set_image(b)
    assert second.stats["encoder_calls"] == 0 and second.stats["disk_hits"] == 1
    assert same_prediction(second.predict(**PROMPT), expected)
    # a disk hit is remembered in memory
    second.set_image(a)
    second.set_image(b)
    assert second.stats["encoder_calls"] == 0
    assert second.stats["disk_hits"] == 2 and second.stats["memory_hits"] == 1
    assert entries(tmp_path) == files


def test_a_new_process_gets_a_disk_hit_with_zero_encoder_calls(tmp_path):
    image = make_image(75, 49, seed=7)
    cache_dir = tmp_path / "cache"
    seg = Segmenter(random_sam(seed=0), cache_dir=cache_dir, exact=True)
    seg.set_image(image)
    expected = seg.predict(**PROMPT)
    np.save(tmp_path / "image.npy", image)
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from sam_widget import Segmenter
        from sam_widget.engine.models import random_sam

        cache_dir, image_path, out_path = sys.argv[1:4]
        seg = Segmenter(random_sam(seed=0), cache_dir=cache_dir, exact=True)
        seg.set_image(np.load(image_path))
        pred = seg.predict(points=[[10.5, 20.25], [40, 33]], labels=[1, 0])
        np.savez(out_path, masks=pred.masks, scores=pred.scores, logits=pred.logits)
        print(json.dumps({k: seg.stats[k] for k in ("encoder_calls", "disk_hits", "memory_hits")}))
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-c", script, str(cache_dir), str(tmp_path / "image.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    assert stats == {"encoder_calls": 0, "disk_hits": 1, "memory_hits": 0}
    with np.load(tmp_path / "out.npz") as out:
        assert np.array_equal(out["masks"], expected.masks)
        assert np.array_equal(out["scores"], expected.scores)
        assert np.array_equal(out["logits"], expected.logits)


def test_a_model_with_other_weights_does_not_hit(tmp_path, images):
    a = images[0]
    Segmenter(random_sam(seed=0), cache_dir=tmp_path, exact=True).set_image(a)
    other_sam = random_sam(seed=1)
    other = Segmenter(other_sam, cache_dir=tmp_path, exact=True)
    other.set_image(a)
    assert other.stats["encoder_calls"] == 1 and other.stats["disk_hits"] == 0
    assert_matches_reference(other.predict(**PROMPT), reference(other_sam, a))
    assert len(entries(tmp_path)) == 2

    # a single changed encoder weight is enough to change the fingerprint
    nudged = random_sam(seed=0)
    with torch.no_grad():
        nudged.image_encoder.neck[0].weight[0, 0, 0, 0] += 1e-3
    seg = Segmenter(nudged, cache_dir=tmp_path, exact=True)
    seg.set_image(a)
    assert seg.stats["encoder_calls"] == 1 and seg.stats["disk_hits"] == 0
    assert_matches_reference(seg.predict(**PROMPT), reference(nudged, a))


def test_changing_weights_in_place_then_refresh_fingerprint_forgets_embeddings(tmp_path, images):
    a = images[0]
    sam = random_sam(seed=0)  # private model: it gets modified
    seg = Segmenter(sam, cache_dir=tmp_path, exact=True)
    seg.set_image(a)
    old = seg.fingerprint
    with torch.no_grad():
        sam.image_encoder.patch_embed.proj.bias.add_(0.5)
    assert seg.refresh_fingerprint() != old
    seg.set_image(a)
    assert seg.stats["encoder_calls"] == 2 and seg.stats["memory_hits"] == 0 and seg.stats["disk_hits"] == 0
    assert_matches_reference(seg.predict(**PROMPT), reference(sam, a))


def test_exact_and_default_modes_do_not_share_disk_entries(tiny_sam, tmp_path, images):
    a = images[0]
    exact = Segmenter(tiny_sam, cache_dir=tmp_path, exact=True)
    exact.set_image(a)
    fast = Segmenter(tiny_sam, cache_dir=tmp_path)
    fast.set_image(a)
    assert fast.stats["encoder_calls"] == 1 and fast.stats["disk_hits"] == 0
    assert exact.fingerprint != fast.fingerprint
    assert len(entries(tmp_path)) == 2
    for mode in (True, False):  # each mode then finds its own entry
        again = Segmenter(tiny_sam, cache_dir=tmp_path, exact=mode)
        again.set_image(a)
        assert again.stats["encoder_calls"] == 0 and again.stats["disk_hits"] == 1


def test_a_bgr_model_does_not_reuse_embeddings_of_the_same_weights_in_rgb(tiny_sam, tmp_path, images):
    a = images[0]
    Segmenter(tiny_sam, cache_dir=tmp_path, exact=True).set_image(a)
    bgr = random_sam(seed=0)
    bgr.image_format = "BGR"  # same weights, but it sees the channels flipped
    seg = Segmenter(bgr, cache_dir=tmp_path, exact=True)
    seg.set_image(a)
    assert seg.stats["encoder_calls"] == 1 and seg.stats["disk_hits"] == 0
    assert_matches_reference(seg.predict(**PROMPT), reference(bgr, a))


# ------------------------------------------------------ damaged or foreign entries
def _flip_bytes(path: Path, tmp: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(x ^ 0xFF for x in data[mid : mid + 64])
    path.write_bytes(bytes(data))


def _truncate(path: Path, tmp: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path, tmp: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path, tmp: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _tampered_embedding(path: Path, tmp: Path) -> None:
    """A well-formed file whose embedding was altered after its checksum was taken."""
    with np.load(path) as z:
        header, features = z["header"], z["features"].copy()
    features[0, 0, 0, 0] += 0.25
    with open(path, "wb") as f:
        np.savez(f, features=features, header=header)


def _no_header(path: Path, tmp: Path) -> None:
    with np.load(path) as z:
        features = z["features"].copy()
    with open(path, "wb") as f:
        np.savez(f, features=features)


def _pickled(path: Path, tmp: Path) -> None:
    with open(path, "wb") as f:
        np.savez(f, features=np.array([{"evil": 1}], dtype=object), header=np.zeros(3, np.uint8))


def _foreign_model(path: Path, tmp: Path) -> None:
    """The entry model seed=1 wrote for the same image, under the name seed=0 expects."""
    d = tmp / "foreign"
    Segmenter(random_sam(seed=1), cache_dir=d, exact=True).set_image(make_image(60, 80, seed=101))
    (src,) = entries(d)
    shutil.copyfile(src, path)


def _other_image(path: Path, tmp: Path) -> None:
    """The same model's entry for another image of the same size, under this image's name."""
    d = tmp / "other"
    Segmenter(random_sam(seed=0), cache_dir=d, exact=True).set_image(make_image(60, 80, seed=999))
    (src,) = entries(d)
    shutil.copyfile(src, path)


DAMAGE = {
    "flipped_bytes": _flip_bytes,
    "truncated": _truncate,
    "empty": _empty,
    "garbage": _garbage,
    "tampered_embedding": _tampered_embedding,
    "no_header": _no_header,
    "pickled_object": _pickled,
    "foreign_model": _foreign_model,
    "other_image": _other_image,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_bad_disk_entry_is_warned_recomputed_and_replaced(tiny_sam, tmp_path, damage):
    image = make_image(60, 80, seed=101)
    cache_dir = tmp_path / "cache"
    Segmenter(tiny_sam, cache_dir=cache_dir, exact=True).set_image(image)
    (entry,) = entries(cache_dir)
    good_bytes = entry.read_bytes()
    DAMAGE[damage](entry, tmp_path)
    assert entry.read_bytes() != good_bytes

    seg = Segmenter(tiny_sam, cache_dir=cache_dir, exact=True)
    with pytest.warns(CacheWarning, match="recomputing"):
        seg.set_image(image)
    assert seg.stats["encoder_calls"] == 1 and seg.stats["disk_hits"] == 0
    expected = reference(tiny_sam, image)
    assert_matches_reference(seg.predict(**PROMPT), expected)

    # the entry was replaced: the next segmenter hits it silently and gets the right answer
    assert entries(cache_dir) == [entry]
    after = Segmenter(tiny_sam, cache_dir=cache_dir, exact=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        after.set_image(image)
    assert after.stats["encoder_calls"] == 0 and after.stats["disk_hits"] == 1
    assert_matches_reference(after.predict(**PROMPT), expected)


def test_a_directory_squatting_an_entry_name_never_crashes(tiny_sam, tmp_path):
    image = make_image(60, 80, seed=101)
    Segmenter(tiny_sam, cache_dir=tmp_path, exact=True).set_image(image)
    (entry,) = entries(tmp_path)
    entry.unlink()
    entry.mkdir()
    seg = Segmenter(tiny_sam, cache_dir=tmp_path, exact=True)
    with pytest.warns(CacheWarning):
        seg.set_image(image)
    assert seg.stats["encoder_calls"] == 1
    assert_matches_reference(seg.predict(**PROMPT), reference(tiny_sam, image))


def test_a_failed_write_leaves_neither_a_partial_entry_nor_a_temp_file(tiny_sam, tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.os, "replace", failing_replace)
    seg = Segmenter(tiny_sam, cache_dir=tmp_path, exact=True)
    with pytest.warns(CacheWarning, match="Could not write"):
        seg.set_image(make_image(60, 80, seed=101))
    assert list(tmp_path.iterdir()) == []
    seg.predict(**PROMPT)  # the image is set all the same
    assert seg.stats["encoder_calls"] == 1


def test_cache_dir_is_created_and_must_be_a_directory(tiny_sam, tmp_path):
    nested = tmp_path / "a" / "b"
    seg = Segmenter(tiny_sam, cache_dir=nested)
    seg.set_image(make_image(10, 10, seed=1))
    assert len(entries(nested)) == 1
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        Segmenter(tiny_sam, cache_dir=a_file)
    with pytest.raises(TypeError, match="path"):
        DiskCache(42)
