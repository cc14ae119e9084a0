"""to_code(): every committed mask made again by plain segment_anything in a fresh process.

The generated cell is run in a new Python process (``subprocess``); in exact mode every mask
must come out bit for bit (its own ``np.array_equal`` assertions), in fast mode with IoU >=
0.99. Random-weight models are handed to the cell through its documented ``sam_model`` hook
(built again from the same seed in the new process); ``tiny_shapes`` is built by the cell
itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from sam_widget import Segmenter, Session, load_sam
from sam_widget.data import shapes_image
from sam_widget.provenance import session_file_code
from widget_driver import SlowSegmenter

IMAGE = make_image(150, 200, seed=4)
IMAGE.setflags(write=False)
RANDOM_MODEL = "from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam\nsam_model = random_sam(TINY_TEST_CONFIG, seed=0)\n"


@pytest.fixture
def sessions():
    made = []

    def make(image, segmenter) -> Session:
        s = Session(image, segmenter=segmenter)
        s.wait_ready(60)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def run_cell(code: str, tmp_path, prelude: str = "") -> subprocess.CompletedProcess:
    """Run ``prelude`` then the generated ``code`` in a fresh Python process (module namespace)."""
    path = tmp_path / "generated_cell.py"
    path.write_text(code)
    runner = prelude + f"exec(compile(open({str(path)!r}).read(), 'generated_cell', 'exec'))\n"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


def predict_calls(code: str, obj_id: int) -> int:
    section = code.split(f"# ---- object {obj_id} ")[1].split("# ---- object ")[0]
    return section.count(".predict(")


# ============================================================================ exact: bit for bit
def test_exact_mode_code_reproduces_every_mask_bit_for_bit_in_a_fresh_process(sessions, tmp_path, rng_image):
    path = tmp_path / "scene.png"
    Image.fromarray(IMAGE).save(path)
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

    seg = SlowSegmenter(random_sam(TINY_TEST_CONFIG, seed=0), exact=True)
    s = sessions(str(path), seg)
    # object 1: a click, the second candidate chosen, a negative point, a box (each refines the last)
    s.add_point(120, 70)
    s.select(1)
    s.add_point(30, 40, label=0)
    s.add_box(60, 20, 180, 130)
    s.commit("refined")
    # object 2: a box cut at another threshold
    s.add_box(10, 10, 90, 100)
    lo, hi = s.explain().logits_range
    s.threshold = lo + 0.6 * (hi - lo)
    s.commit("thresholded")
    s.threshold = 0.0
    # object 3: a mask brought in; object 4: a mask brought in, then refined by a click
    blob = np.zeros(IMAGE.shape[:2], bool)
    blob[40:90, 50:120] = True
    s.add_object(blob, "imported")
    s.add_object(np.roll(blob, 30, axis=0), "imported then refined")
    s.edit(3)
    s.add_point(80, 90)
    s.commit()
    # object 1 again: editing continues its chain
    s.edit(0)
    s.add_point(150, 100)
    s.commit()
    # object 5: prompts faster than answers -- the skipped step is not part of the chain
    seg.predict_delay = 0.4
    calls = seg.predict_calls
    s._push_prompts(lambda p: p.with_point(100, 60, 1))
    deadline = time.monotonic() + 30
    while seg.predict_calls == calls and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker is computing the first click now
    s._push_prompts(lambda p: p.with_point(20, 20, 0))
    s._push_prompts(lambda p: p.with_point(140, 120, 0))
    s.wait_idle()
    seg.predict_delay = 0.0
    assert seg.predict_calls == calls + 2  # the middle state was never computed
    fifth = s.commit("fast clicks")
    assert len(fifth.prompts.points) == 3 and len(fifth.chain) == 1 and fifth.chain[0].points == ((100.0, 60.0),)

    objs = s.objects
    assert [o.label for o in objs] == ["refined", "thresholded", "imported", "imported then refined", "fast clicks"]
    assert objs[0].candidate == 0 and [st.candidate for st in objs[0].chain] == [1, 0, 0]
    code = s.to_code()
    compile(code, "generated", "exec")
    assert "sam_model_registry" in code and "SamPredictor(model)" in code
    assert "Exact mode" in code and "np.array_equal(mask, saved)" in code
    assert predict_calls(code, 1) == 4 and "candidate 2 of 3 was kept" in code
    assert code.count("mask_input=mask_input") == 3 + 1 + 1  # refinements: object 1 three, 4 one, 5 one
    assert "imported from a mask" in code.split("# ---- object 3 ")[1].split("# ---- object 4")[0]
    assert predict_calls(code, 3) == 0
    assert "mask_to_logits(start, model)" in code.split("# ---- object 4 ")[1]
    assert predict_calls(code, 5) == 2
    assert f"> {s.objects[1].threshold!r}" in code and "return_logits=True" in code

    done = run_cell(code, tmp_path, RANDOM_MODEL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "5 mask(s) reproduced, bit for bit" in done.stdout

    # the check can fail: cut object 2 at SAM's threshold instead of the one it was kept at
    t = s.objects[1].threshold
    tampered = code.replace(f"mask = masks[k] > {t!r}", "mask = masks[k] > 0.0", 1)
    assert tampered != code
    bad = run_cell(tampered, tmp_path, RANDOM_MODEL)
    assert bad.returncode != 0 and "object 2:" in bad.stderr and "pixels differ from the saved mask" in bad.stderr


# ============================================================================ tiny_shapes, exact and fast
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "fast"])
def test_tiny_shapes_code_builds_its_own_model_exact_bit_for_bit_fast_iou(sessions, tmp_path, exact):
    image, _ = shapes_image(258, size=(384, 512))
    path = tmp_path / "scene258.png"
    Image.fromarray(image).save(path)
    s = sessions(str(path), Segmenter(load_sam("tiny_shapes"), exact=exact))
    s.add_point(445, 233)  # the rectangle, with and without the shape lying in it
    s.add_point(445, 304, label=0)  # take the shape out
    s.commit("rectangle")
    s.add_box(380, 180, 500, 330)
    s.commit("boxed")
    code = s.to_code()
    assert "load_tiny_shapes()" in code
    if exact:
        assert "np.array_equal(mask, saved)" in code and "bit for bit" in code
    else:
        assert "Fast mode" in code and "IoU >= 0.99 (checked below)" in code and "np.array_equal(mask, saved)" not in code
    done = run_cell(code, tmp_path)  # no hook: the cell builds tiny_shapes itself
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("2 mask(s) reproduced, " + ("bit for bit" if exact else "IoU >= 0.99")) in done.stdout


# ============================================================================ placeholders and edge cases
def test_an_in_memory_image_gets_a_placeholder_that_checks_the_pixels(sessions, tiny_sam, tmp_path):
    s = sessions(IMAGE, Segmenter(tiny_sam, exact=True))
    s.add_point(120, 70)
    s.commit()
    code = s.to_code()
    assert "PLACEHOLDER: the image was an in-memory array" in code and "sam_image" in code
    missing = run_cell(code, tmp_path, RANDOM_MODEL)
    assert missing.returncode != 0 and "assign the image the masks were made on to `sam_image`" in missing.stderr
    np.save(tmp_path / "image.npy", IMAGE)
    wrong = run_cell(code, tmp_path, RANDOM_MODEL + "import numpy as np\nsam_image = np.load('image.npy')[::-1].copy()\n")
    assert wrong.returncode != 0 and "its pixels differ" in wrong.stderr
    done = run_cell(code, tmp_path, RANDOM_MODEL + "import numpy as np\nsam_image = np.load('image.npy')\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 mask(s) reproduced, bit for bit" in done.stdout


def test_a_custom_model_without_the_hook_says_what_to_do(sessions, tiny_sam, tmp_path):
    s = sessions(IMAGE, Segmenter(tiny_sam, exact=True))
    s.add_point(120, 70)
    s.commit()
    done = run_cell(s.to_code(), tmp_path, "import numpy as np\nsam_image = None\n")
    assert done.returncode != 0 and "assign that segment_anything Sam to `sam_model`" in done.stderr


def test_no_objects_gives_an_empty_but_valid_cell(sessions, tiny_sam):
    s = sessions(IMAGE, Segmenter(tiny_sam, exact=True))
    s.add_point(120, 70)  # prompts, but nothing kept
    code = s.to_code()
    compile(code, "generated", "exec")
    lines = [ln for ln in code.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("#") for ln in lines) and "no objects" in code
    exec(code, {})  # runs, does nothing


def test_an_imported_object_says_so_and_needs_no_model(sessions, tiny_sam):
    s = sessions(IMAGE, Segmenter(tiny_sam, exact=True))
    blob = np.zeros(IMAGE.shape[:2], bool)
    blob[10:40, 20:70] = True
    obj = s.add_object(blob, "nucleus")
    assert obj.imported and obj.prompt_record is None
    code = s.to_code()
    assert "imported from a mask (add_object, set_objects or a file), not made by prompts" in code
    assert ".predict(" not in code and "predictor = None" in code
    ns: dict = {"sam_image": IMAGE.copy()}
    exec(code, ns)
    assert np.array_equal(ns["reproduced"][1], blob)
    assert "imported from a mask" in obj.to_code()


def test_obj_to_code_replays_one_object_on_a_predictor(sessions, tiny_sam):
    from segment_anything import SamPredictor

    s = sessions(IMAGE, Segmenter(tiny_sam, exact=True))
    s.add_point(120, 70)
    s.select(2)
    s.add_point(60, 30)
    obj = s.commit("thing")
    fragment = obj.to_code(exact=True)
    assert fragment.count(".predict(") == 2 and "candidate 3 of 3 was kept" in fragment
    p = SamPredictor(tiny_sam)
    p.set_image(IMAGE)
    ns = {"predictor": p}
    exec(fragment, ns)
    assert np.array_equal(ns["mask"], obj.mask)
    with pytest.raises(AssertionError, match="pixels differ"):  # and it checks
        exec(fragment.replace("[60.0, 30.0]", "[10.0, 130.0]"), {"predictor": p})  # another second click


# ============================================================================ the session file
def test_a_session_file_carries_enough_to_write_the_code_again(sessions, tmp_path):
    """What save() keeps (prompts with candidate and chain, the threshold, exact mode) gives
    the same predict calls -- from the file alone, and from the session loaded from it -- and
    they reproduce the masks bit for bit in a new process."""
    import sam_widget.io as sio
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam
    from sam_widget.state import ObjectRecord, Prompts, provenance_from_record

    path = tmp_path / "scene.png"
    Image.fromarray(IMAGE).save(path)
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    s = sessions(str(path), Segmenter(sam, exact=True))
    s.add_point(120, 70)
    s.select(1)
    s.add_point(30, 40, label=0)
    s.commit("refined")
    s.add_box(10, 10, 90, 100)
    lo, hi = s.explain().logits_range
    s.threshold = lo + 0.6 * (hi - lo)
    s.commit("thresholded")
    s.threshold = 0.0
    blob = np.zeros(IMAGE.shape[:2], bool)
    blob[40:90, 50:120] = True
    s.add_object(blob, "started from a mask")
    s.edit(2)
    s.add_point(80, 60)
    s.commit()

    file = s.save(tmp_path / "work.json")
    data = sio.read_session(file)
    stored = data.images[0].objects
    assert stored[0].prompts.candidate == 0 and [c.candidate for c in stored[0].prompts.chain] == [1]
    assert stored[1].extra == {"threshold": s.objects[1].threshold}
    assert stored[2].prompts.chain[0].is_empty  # the refinement started from a mask
    assert data.model["exact"] is True
    for o, st in zip(s.objects, stored):  # hand-written files: the same entries read back the same way
        p = st.prompts or Prompts()
        back = ObjectRecord(st.label, st.color, st.mask, o.score, Prompts(p.points, p.labels, p.box), st.id,
                            **provenance_from_record(st.prompts, st.extra))
        assert back.prompt_record == o.prompt_record and back.extra == o.extra and back.candidate == o.candidate

    from_file = session_file_code(file)
    loaded = sessions_load(file, Segmenter(sam, exact=True))
    try:
        from_loaded = loaded.to_code()
    finally:
        loaded.close()
    calls = lambda c: c.split("# ---- object 1")[1]  # noqa: E731 - the predict calls and checks
    live = s.to_code()
    assert calls(from_loaded) == calls(from_file)
    assert calls(from_file).split("# ---- object 3")[0] == calls(live).split("# ---- object 3")[0]
    assert "PLACEHOLDER: that mask is not in the session file" in from_file  # files do not keep the start mask
    np.save(tmp_path / "start.npy", blob)
    done = run_cell(from_file, tmp_path, RANDOM_MODEL + "import numpy as np\nsam_start_mask_3 = np.load('start.npy')\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 mask(s) reproduced, bit for bit" in done.stdout


def sessions_load(file, segmenter) -> Session:
    s = Session.load(file, segmenter=segmenter)
    s.wait_ready(60)
    return s


# ============================================================================ an official-size checkpoint
@pytest.mark.slow
def test_a_vit_b_checkpoint_file_is_named_in_the_code_and_loaded_by_the_registry(sessions, tmp_path):
    """The registry route: random vit_b weights saved as a checkpoint, loaded by load_sam in the
    session and by ``sam_model_registry["vit_b"](checkpoint=...)`` in the generated cell."""
    from sam_widget.engine.models import random_sam

    ckpt = tmp_path / "random_vit_b.pth"
    torch.save(random_sam("vit_b", seed=1).state_dict(), ckpt)
    path = tmp_path / "scene.png"
    Image.fromarray(IMAGE).save(path)
    s = sessions(str(path), Segmenter(load_sam("vit_b", checkpoint=ckpt, device="cpu"), exact=True))
    s.add_point(120, 70)
    s.add_point(40, 30, label=0)
    s.commit()
    code = s.to_code()
    assert f"CHECKPOINT = {str(ckpt)!r}" in code and "sam_model_registry['vit_b'](checkpoint=CHECKPOINT)" in code
    done = run_cell(code, tmp_path)  # no hook: the cell loads the file itself
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 mask(s) reproduced, bit for bit" in done.stdout
