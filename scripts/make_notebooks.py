"""Write notebooks/quickstart.ipynb, notebooks/teaching.ipynb and notebooks/analysis.ipynb (outputs empty).

Run: .venv/bin/python scripts/make_notebooks.py

The tracked notebooks are exactly what this script writes (tests/test_notebooks.py checks it):
no outputs, no widget state, stable cell ids. scripts/demo.sh opens copies of them outside the
repository, so they never collect a session's outputs.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parent.parent / "notebooks"


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str):
    return new_code_cell(text.strip())


quickstart = [
    md("""
# sam_widget quick start

Click on an object in the image below: a **left click** adds a positive point, a **right
click** (or shift+click) a negative one, **press–drag–release** draws a box. Pick one of the
candidate masks on the right (keys 1/2/3), press **Enter** to keep it as an object, **Ctrl+Z**
to undo. Press **?** for every shortcut.

The widget holds a small set of three images: **◀ / ▶** in its toolbar (or the **← / →**
keys) move between them, and each image keeps its own objects and undo history.

The cell below uses the official SAM `vit_b` model when its checkpoint is on disk or can
be downloaded (375 MB, once); otherwise it says so in one line and opens the offline demo:
synthetic shapes with the small `tiny_shapes` model that ships with sam_widget.
"""),
    code("""
from sam_widget import SamWidget
from sam_widget.demo import demo_setup

demo = demo_setup()                      # or demo_setup("tiny_shapes") for the offline demo
w = SamWidget(demo.images, segmenter=demo.segmenter)   # a list of images (or a folder, or a glob)
w
"""),
    md("""
## The mask is a NumPy array

**Click on an object above first**, then run the cells below (Shift+Enter). `w.mask` is the
current selection as an `(H, W)` bool array at the full image size. The notebook never clicks
for you: if you ran everything at once, the cells below say what to do and you run them
again after clicking.
"""),
    code("""
import os
import numpy as np

# Scripted runs only (the tests set SAM_WIDGET_AUTOCLICK=1): click where a person would.
if os.environ.get("SAM_WIDGET_AUTOCLICK") == "1" and not w.mask.any():
    w.add_point(*demo.suggest_point())

mask = w.mask
if mask.any():
    ys, xs = np.nonzero(mask)
    print("mask:", mask.shape, mask.dtype)
    print("area:", int(mask.sum()), "pixels")
    print("bounding box (x0, y0, x1, y1):", (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
else:
    print("No mask yet: click on an object in the widget above, then run this cell again.")
"""),
    code("""
import matplotlib.pyplot as plt

if mask.any():
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].imshow(w.image)
    axes[0].imshow(np.ma.masked_where(~mask, mask), alpha=0.5, cmap="autumn")
    axes[0].set_title("image + mask")
    axes[1].imshow(mask, cmap="gray")
    axes[1].set_title(f"mask: {int(mask.sum())} px")
    for ax in axes:
        ax.axis("off")
    plt.show()
else:
    print("(the figure appears here once you have clicked and run the cell above)")
"""),
    md("""
## Objects

Press **Enter** (or *Add*) in the widget to keep the current mask as an object. `w.masks`
stacks every object's mask, `w.labels` is a label image (0 = background, i = object i).
"""),
    code("""
if os.environ.get("SAM_WIDGET_AUTOCLICK") == "1" and not w.objects:
    w.commit("first object")             # scripted runs only; a person presses Enter

if w.objects:
    print([(o.label, o.area) for o in w.objects])
    print("masks:", w.masks.shape, " labels:", w.labels.shape, w.labels.dtype, "max", w.labels.max())
else:
    print("No objects yet: press Enter (or Add) in the widget to keep the current mask, then run this cell again.")
"""),
    md("""
## Every image keeps its own objects

`w.results[i]` holds the objects of image `i` (with `.masks` and `.labels` like above).
Move to the next image with ▶ (or →) and keep a few objects there too, then run this cell.

To keep your work across kernel restarts: `w.save("work.json")` and, later,
`SamWidget.load("work.json")`; or open the widget with `SamWidget(images, autosave="work.json")`
and every object you keep is written to that file within a second (and restored when you
run the cell again). `w.to_coco("ann.json")` exports COCO; see `analysis.ipynb`.
"""),
    code("""
for r in w.results:
    print(f"image {r.index + 1} of {len(w.results)} ({r.name}): {len(r.objects)} object(s)", [o.label for o in r.objects])
"""),
]

teaching = [
    md("""
# How SAM answers prompts — a step-by-step tour

Segment Anything splits the work in two: a heavy **image encoder** runs once per image and
produces an embedding; a light **prompt encoder + mask decoder** turns each prompt
(points, a box, a previous mask) into masks in milliseconds. This notebook looks inside both
with `explain()` — the same numbers the widget's **Explain** panel shows (key **X**) — and
ends with the Python code that makes every mask again with plain `segment_anything`.

The tour's clicks are made from code on a headless `Session` (no widget), so its figures are
always the same and the notebook never clicks in *your* widget: that one is below, for you to
try the same things by hand. It runs **offline** with `tiny_shapes`, a small SAM trained on
synthetic shapes that ships with sam_widget, on a scene chosen for this tour: a brown
rectangle with a small magenta shape lying inside it. Every cell prints the numbers behind
its figure. For the official model change one line: `MODEL = "vit_b"` (the clicks then land
on the sample photo, and the figures differ).
"""),
    code("""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sam_widget import SamWidget, Session
from sam_widget.demo import demo_setup

MODEL = os.environ.get("SAM_WIDGET_MODEL", "tiny_shapes")   # "vit_b" for the official SAM
# exact=True: SamPredictor's own fp32 computations, so the code at the end reproduces every mask bit for bit
demo = demo_setup(MODEL, seed=258, exact=True)   # offline: synthetic scene 258 and its true masks
seg = demo.segmenter
image_file = os.path.join(tempfile.mkdtemp(), "scene.png")   # a file, so the generated code can name it
Image.fromarray(demo.image).save(image_file)
tour = Session(image_file, segmenter=seg).wait_ready()       # the tour: clicks made from code
H, W = tour.image.shape[:2]
if demo.true_masks is not None:
    click = (445, 233)                   # on the brown rectangle, beside the magenta shape
    inside = (445, 304)                  # on the magenta shape
    rect = next(m for m in demo.true_masks if m[click[1], click[0]])   # visible part of the rectangle
    shape = next(m for m in demo.true_masks if m[inside[1], inside[0]])
else:                                    # a photo: no ground truth, generic points
    click = demo.suggest_point()
    inside = (min(W - 1, click[0] + W // 8), click[1])
    rect = shape = None
"""),
    md("""
## Your widget

Click on an object (left click: positive point, right click: negative, drag: a box). The
**Explain** panel beside the canvas is open (key **X** toggles it): the three candidates with
their predicted IoU and stability score, the chosen candidate's low-resolution logits with
your prompts on them, and a **threshold** slider — the mask on the canvas follows it. Below
it, what the last click cost, stage by stage.
"""),
    code("""
w = SamWidget(image_file, segmenter=seg)  # the same model: the embedding comes from its cache
w.show_explain()
w
"""),
    md("""
## 1. One click is ambiguous: three candidates

A single point could mean a part, an object, or a group. SAM therefore answers a single
click with **three candidate masks**, each with its own *predicted IoU* — the model's guess
of how good that mask is — and sam_widget adds each one's **stability score** (the measure
SAM's automatic mask generator filters with: how little the mask changes when the threshold
moves by ±1). The best-scoring candidate is selected.

Here the click is on the brown rectangle. Does the magenta shape lying inside it belong to
the object? `tiny_shapes` offers both answers: candidate 1 is the rectangle *with* the shape
(filled), candidate 2 the rectangle *without* it (a hole where the shape lies), with almost
the same predicted IoU. Its candidate 3 is a low-confidence guess (predicted IoU about 0.6,
speckled, stability 0): this small model learned only this one kind of ambiguity — an
object with or without what lies on it — where the official SAM's three outputs typically
are a part, an object and a group.
"""),
    code("""
def overlay(ax, mask, title, prompts=None, color="cyan"):
    prompts = prompts or tour.prompts
    ax.imshow(tour.image)
    ax.imshow(np.ma.masked_where(~mask, mask), alpha=0.45, cmap="winter", vmin=0, vmax=1)
    if mask.any() and not mask.all():
        ax.contour(mask, levels=[0.5], colors=color, linewidths=1.5)
    for (x, y), lab in zip(prompts.points, prompts.labels):
        ax.plot(x, y, marker="*", ms=16, color="lime" if lab else "red", mec="black")
    if prompts.box is not None:
        x0, y0, x1, y1 = prompts.box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=2))
    ax.set_title(title)
    ax.axis("off")


tour.add_point(*click)
e = tour.explain()
fig, axes = plt.subplots(1, len(e.scores), figsize=(4.5 * len(e.scores), 3.8), squeeze=False)
for i, ax in enumerate(axes[0]):
    overlay(ax, e.masks[i], f"candidate {i + 1}: IoU {e.scores[i]:.3f}, stability {e.stability[i]:.3f}")
fig.suptitle(f"one positive click at {click}")
plt.show()
print(e.candidates.round(3))
print("selected candidate:", e.chosen + 1)
"""),
    md("""
The scene is synthetic, so we know the truth: for each candidate, how much of the magenta
shape it covers, and its real IoU with the rectangle alone and with rectangle + shape.
"""),
    code("""
def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())

if rect is not None:
    for i, m in enumerate(e.masks):
        print(f"candidate {i + 1}: predicted IoU {e.scores[i]:.3f}, covers {m[shape].mean():4.0%} of the shape, "
              f"true IoU {iou(m, rect):.3f} with the rectangle alone, {iou(m, rect | shape):.3f} with rectangle + shape")
    a, b = e.masks[:2]
    print(f"candidates 1 and 2 differ in {(a ^ b).sum()} pixels ({1 - iou(a, b):.0%} of their union)")
else:
    print("(a photo: no ground truth here)")
"""),
    md("""
## 2. A negative point removes what it lies on

Following SamPredictor's interactive recipe, every further prompt is answered with **one**
mask, and the low-resolution logits of the mask you had selected are passed back as
`mask_input`. A negative point (label 0) tells the model what is *not* the object: one on
the magenta shape takes the shape out of the selected mask, leaving a hole.
"""),
    code("""
before, before_prompts = tour.mask, tour.prompts
tour.add_point(*inside, label=0)
after = tour.mask
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
overlay(axes[0], before, "before: the selected candidate", prompts=before_prompts)
overlay(axes[1], after, "after a negative point on the shape", color="orange")
plt.show()
print(f"{(before ^ after).sum()} pixels changed")
if rect is not None:
    print(f"shape covered: {before[shape].mean():.0%} before, {after[shape].mean():.0%} after; "
          f"true IoU with the rectangle alone: {iou(before, rect):.3f} before, {iou(after, rect):.3f} after")
"""),
    md("""
## 3. Refinement needs the previous mask: `mask_input`

Why pass the previous logits back? Ask the model the *same two points* without them (a
session with `refine=False` answers every prompt change from the prompts alone, three
candidates, best one selected): the negative point alone does not take the shape out — the
model starts over and its best candidate keeps the shape. With `mask_input` it refines the
mask it had given (left: the logits that were passed back, the earlier answer's).
"""),
    code("""
refined = tour.explain()
rows, cols = (int(np.ceil(v)) for v in refined.valid_hw)   # the logits that cover the image (the rest is padding)
plain = Session(image_file, segmenter=seg, refine=False).wait_ready()
for (x, y), lab in zip(tour.prompts.points, tour.prompts.labels):
    plain.add_point(x, y, lab)
fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8))
mi = refined.mask_input[:rows, :cols]
axes[0].imshow(mi, cmap="RdBu_r", norm=plt.matplotlib.colors.TwoSlopeNorm(0, min(mi.min(), -1e-6), max(mi.max(), 1e-6)))
axes[0].set_title(f"mask_input: the earlier answer's logits")
axes[0].axis("off")
overlay(axes[1], refined.mask, "with mask_input (refine=True)", color="orange")
overlay(axes[2], plain.mask, f"without: {len(plain.candidates)} candidates, best kept", prompts=plain.prompts, color="red")
plt.show()
if rect is not None:
    print(f"shape covered: with mask_input {refined.mask[shape].mean():.0%}, without {plain.mask[shape].mean():.0%}")
print(f"with mask_input: {len(refined.scores)} mask; without: {len(plain.candidates)} candidates")
plain.close()
"""),
    md("""
## 4. A click says where, a box says how far

Esc (or `clear()`) removes the prompts. A click on the magenta shape is answered with the
shape itself. Draw the rectangle's box instead (press, drag, release) and the answer is the
whole rectangle, the shape inside it included: the box tells the model the object's extent,
which one point cannot.
"""),
    code("""
tour.clear()
tour.add_point(*inside)
clicked, clicked_prompts = tour.mask, tour.prompts
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
overlay(axes[0], clicked, f"a click at {inside}", prompts=clicked_prompts)
tour.clear()
if rect is not None:
    ys, xs = np.nonzero(rect | shape)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
else:
    x0, y0, x1, y1 = max(0, click[0] - 60), max(0, click[1] - 60), min(W, click[0] + 60), min(H, click[1] + 60)
tour.add_box(x0, y0, x1, y1)
boxed = tour.mask
overlay(axes[1], boxed, f"the box ({x0}, {y0}, {x1}, {y1})", color="yellow")
plt.show()
print(f"click: {clicked.sum()} px; box: {boxed.sum()} px")
if rect is not None:
    print(f"true IoU with the magenta shape: click {iou(clicked, shape):.3f}, box {iou(boxed, shape):.3f}; "
          f"with rectangle + shape: click {iou(clicked, rect | shape):.3f}, box {iou(boxed, rect | shape):.3f}")
"""),
    md("""
## 5. The threshold: where the mask ends

SAM predicts each mask as a low-resolution map of **logits**, four times its embedding grid
— **64×64** for `tiny_shapes` (16×16 grid), **256×256** for the official models (64×64 grid)
— upsampled to the image; the mask is where they exceed SAM's threshold, **0.0**. Raise
the threshold and the mask shrinks to where the model is surest; lower it and it grows (in
the widget: the Explain panel's slider, or `w.threshold = 0.5`). The stability score is
exactly this: the mask cut at +1 divided by the mask cut at −1. `tiny_shapes`' logits fall
steeply at the rectangle's edges, so ±0.5 moves the edge by less than one low-resolution
pixel (a few per cent of the area); where a model is unsure — logits close to 0 over a wide
band — the threshold moves the edge much further, and the stability score is low.
"""),
    code("""
tour.clear()
tour.add_point(*click)                   # the first answer again (a cached embedding: no encoder)
e = tour.explain()
lo, hi = e.logits_range
thresholds = [t for t in (-1.0, -0.5, 0.0, 0.5, 1.0) if lo <= t <= hi]
areas = {}
for t in thresholds:
    tour.threshold = t                   # the session asks the engine for the mask at t
    areas[t] = int(tour.mask.sum())
tour.threshold = 0.0
fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
rows, cols = (int(np.ceil(v)) for v in e.valid_hw)          # the part of the logits over the image
logits = e.logits[:rows, :cols]
ys, xs = np.nonzero(logits > max(-1.0, lo / 2))              # zoom in on the object
y0, y1, x0, x1 = max(0, ys.min() - 3), min(rows, ys.max() + 4), max(0, xs.min() - 3), min(cols, xs.max() + 4)
norm = plt.matplotlib.colors.TwoSlopeNorm(0.0, lo, hi)
im = axes[0].imshow(logits, cmap="RdBu_r", norm=norm)
lines = []
for t, color in ((-0.5, "tab:green"), (0.0, "black"), (0.5, "tab:purple")):
    if lo < t < hi:
        axes[0].contour(logits, levels=[t], colors=color, linewidths=1.2)
        lines.append(plt.Line2D([], [], color=color, label=f"threshold {t:+.1f}"))
for x, y, lab in e.markers:
    axes[0].plot(x, y, marker="*", ms=12, color="lime" if lab else "red", mec="black")
axes[0].set_xlim(x0 - 0.5, x1 - 0.5)
axes[0].set_ylim(y1 - 0.5, y0 - 0.5)
axes[0].legend(handles=lines, loc="lower left", fontsize=8)
axes[0].set_title("the chosen candidate's logits (0 = white)")
fig.colorbar(im, ax=axes[0])
axes[1].plot(list(areas), list(areas.values()), "o-")
axes[1].set_xlabel("threshold (logit)")
axes[1].set_ylabel("mask pixels")
axes[1].set_title("a higher threshold, a smaller mask")
plt.show()
print("logits:", e.logits.shape, "for an image of", (H, W), f"range [{lo:.2f}, {hi:.2f}]")
for t, a in areas.items():
    print(f"threshold {t:+.1f}: {a} pixels")
if -1.0 in areas and 1.0 in areas:
    print(f"stability from the areas: {areas[1.0]} / {areas[-1.0]} = {areas[1.0] / areas[-1.0]:.4f}; "
          f"explain() says {e.stability[e.chosen]:.4f}")
"""),
    md("""
## 6. What the encoder costs, and what a click costs

`explain().timings` breaks the last prediction into stages; `explain().embedding` says how
the image's embedding was made. The image encoder ran once, when the tour's session set the
image; every prompt since only ran the prompt encoder and the mask decoder. (Your widget
shares the tour's segmenter: when one of them predicts after the other, it sets its image
again from the memory cache, in milliseconds — the timings say so. Times are this
machine's, today; on a busy machine they vary.) `tiny_shapes` is small, so its encoder costs
only a few clicks; the official `vit_b` on a 2-core CPU takes about 5 s to encode and 30 ms
per click — some 160 clicks (README, *Performance*).
"""),
    code("""
clicks = []
for k in range(5):                       # five more clicks: each one is decoder work only
    tour.clear()
    tour.add_point(click[0] + 3 * k, click[1])
    clicks.append(tour.explain().timings.loc["prompt encoder + mask decoder", "seconds"])
e = tour.explain()
t = e.timings
print(t[["seconds", "note"]].to_string(na_rep="–"))
emb = e.embedding                        # how the tour's image was encoded, once
encoder_s = emb["seconds"]
click_s = float(np.median(clicks))
fig, ax = plt.subplots(figsize=(7, 2.4))
bars = ax.barh(["image encoder\\n(once per image)", "a click\\n(median of 5)"], [encoder_s * 1000, click_s * 1000],
               color=["#b2182b", "#2166ac"])
ax.bar_label(bars, fmt="%.1f ms", padding=3)
ax.set_xlabel("milliseconds")
ax.set_xlim(0, encoder_s * 1000 * 1.25)
plt.show()
tot = e.totals
print(f"image encoder: {tot['encoder_calls']} call(s), {encoder_s * 1000:.0f} ms for set_image ({emb['source']}: "
      f"preprocessing {emb.get('preprocess_s', 0) * 1000:.0f} ms + encoder {emb.get('encoder_s', 0) * 1000:.0f} ms)")
print(f"mask decoder: {tot['decoder_calls']} calls, a click {click_s * 1000:.1f} ms (median): the encoder costs about {encoder_s / click_s:.0f} clicks")
"""),
    md("""
## 7. Keep the masks, and the code that makes them again

`commit` keeps a mask as an object, with how it was made: its prompts, the candidate kept,
every refinement step and the threshold. `to_code()` turns that into a Python cell for
plain `segment_anything` (`sam_model_registry`, `SamPredictor`) that makes every mask again
and asserts it equals the saved one — bit for bit here, because the tour's segmenter runs in
exact mode (the fast default promises IoU ≥ 0.99, and the code says so). The widget's
`w.to_code()` does the same for your objects; `obj.to_code()` for one.
"""),
    code("""
tour.clear()
tour.add_point(*click)
tour.add_point(*inside, label=0)          # section 2's refinement: two predict calls
tour.commit("rectangle")
if rect is not None:
    ys, xs = np.nonzero(rect | shape)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
else:
    box = (max(0, click[0] - 60), max(0, click[1] - 60), min(W, click[0] + 60), min(H, click[1] + 60))
tour.add_box(*box)                       # section 4's box: one predict call
tour.commit("rectangle with the shape")
code = tour.to_code()
print(code)
"""),
    md("""
Run it in a **new Python process**, as someone without sam_widget's session would (a model
made in memory, like the tests' random one, is handed over through the cell's `sam_model`
hook instead):
"""),
    code("""
import subprocess
import sys

if tour.model_info()["name"] == "custom":   # no file to load it from: hand it over
    exec(code, {"sam_model": seg.sam})
else:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    print(run.stdout.strip() or run.stderr[-2000:])
"""),
    md("""
## Your own click

Click on an object in your widget above, open Explain (**X**) and move the slider; then run
this cell: `w.explain()` holds the numbers the panel shows, and `w.threshold` the slider's
value.
"""),
    code("""
# Scripted runs only (the tests set SAM_WIDGET_AUTOCLICK=1): click where a person would.
if os.environ.get("SAM_WIDGET_AUTOCLICK") == "1" and w.prompts.is_empty:
    w.add_point(*click)

if w.prompts.is_empty:
    print("No prompts in your widget yet: click on an object above, then run this cell again.")
else:
    mine = w.explain()
    print(f"your widget: {len(mine.scores)} candidate(s), threshold {w.threshold:g}, "
          f"{mine.bytes_sent} bytes sent to the browser for the last mask")
    display(mine)
"""),
]

analysis = [
    md("""
# From clicks to a table: measuring objects over a set of images

Segment objects on a few images, get **one row per object** (area, position, shape,
intensity) as a pandas DataFrame, plot it, and export the masks as **COCO** — the format
other annotation and training tools read — then read the file back.

This notebook uses the offline `tiny_shapes` model on three synthetic scenes, so it runs
anywhere. With your own images: `SamWidget(["a.jpg", "b.jpg"], model="vit_b")`, or a folder.
"""),
    code("""
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sam_widget import SamWidget
from sam_widget.data import shapes_scene

scenes = [shapes_scene(seed, size=(384, 512)) for seed in (7, 8, 9)]
images = [scene.image for scene in scenes]
w = SamWidget(images, model="tiny_shapes")
w
"""),
    md("""
## 1. Segment and label

On each image: click an object, type its label into the box on the right (for example
`ellipse`, `rectangle`, `ring`), press **Enter** to keep it. **▶** (or →) goes to the next
image. Then run the cells below. Nothing is clicked for you: if you ran everything at once,
the cells below say what to do.
"""),
    code("""
# Scripted runs only (the tests set SAM_WIDGET_AUTOCLICK=1): click and label what a person would.
if os.environ.get("SAM_WIDGET_AUTOCLICK") == "1" and not any(r.objects for r in w.results):
    from scipy import ndimage

    for i, scene in enumerate(scenes):
        w.goto(i)
        for mask, kind in zip(scene.masks, scene.kinds):
            if mask.sum() < 600:  # hardly visible behind other shapes
                continue
            depth = ndimage.distance_transform_edt(mask)
            y, x = np.unravel_index(depth.argmax(), depth.shape)   # the point deepest inside the shape
            w.add_point(int(x), int(y))
            w.commit(kind)
    w.goto(0)

n = sum(len(r.objects) for r in w.results)
if n:
    print(f"{n} objects on {len(w.images)} images:", [len(r.objects) for r in w.results])
else:
    print("No objects yet: click objects in the widget above (Enter keeps each), then run this cell again.")
"""),
    md("""
## 2. One row per object

`w.measurements()` measures every object of every image with scikit-image's
`regionprops_table`: area, bounding box (XYXY), centroid (x = column, y = row), perimeter,
equivalent diameter, eccentricity, solidity, the mean intensity of each colour channel, and
the model's predicted IoU. `pixel_size=` adds physical units (here: 0.5 µm per pixel).
"""),
    code("""
df = w.measurements(pixel_size=0.5, unit="um")
if len(df):
    columns = ["image", "label", "area_px", "area_um2", "centroid_x", "centroid_y", "eccentricity", "solidity", "mean_r", "score"]
    print(df[columns].round(2).to_string(index=False))
else:
    print("(the table appears here once there are objects)")
"""),
    code("""
if len(df):
    per_label = df.groupby("label")["area_um2"]
    print(per_label.agg(["count", "mean", "min", "max"]).round(1).to_string())
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = sorted(per_label.groups)
    ax.boxplot([per_label.get_group(lab) for lab in labels])
    for k, lab in enumerate(labels, start=1):
        ax.scatter(np.full(len(per_label.get_group(lab)), k), per_label.get_group(lab), s=18, alpha=0.7)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    ax.set_ylabel("area (µm²)")
    ax.set_title("area per label")
    plt.show()
else:
    print("(the plot appears here once there are objects)")
"""),
    md("""
## 3. Export to COCO and read it back

`w.to_coco(path)` writes one COCO instances file for all images: masks as compressed RLE
(exact; `polygons=True` for polygons), `bbox` in COCO's XYWH, one category per label, the
predicted IoU as `score` and the prompts in a `sam_widget` field. pycocotools, the reference
reader, gives the masks back; `SamWidget.from_coco` opens the file again as editable
objects (the images were given in memory, so they are passed again).
"""),
    code("""
if len(df):
    out = Path("analysis_out")
    out.mkdir(exist_ok=True)
    w.to_coco(out / "annotations.json")
    df.to_csv(out / "measurements.csv", index=False)

    from pycocotools.coco import COCO

    coco = COCO(str(out / "annotations.json"))
    ours = [o.mask for r in w.results for o in r.objects]
    same = all(np.array_equal(coco.annToMask(coco.anns[k + 1]).astype(bool), m) for k, m in enumerate(ours))
    print(f"{out / 'annotations.json'}: {len(coco.imgs)} images, {len(coco.anns)} annotations, "
          f"categories {[c['name'] for c in coco.loadCats(coco.getCatIds())]}; masks identical: {same}")
    again = SamWidget.from_coco(out / "annotations.json", images=images, model="tiny_shapes")
    print("read back:", [len(r.objects) for r in again.results], "objects per image")
    display(again)                        # editable again: Alt + click on an object refines it
else:
    print("(the export happens here once there are objects)")
"""),
]


def build() -> dict:
    """The notebooks as nbformat objects, with stable cell ids (the same on every run)."""
    out = {}
    for name, cells in [("quickstart", quickstart), ("teaching", teaching), ("analysis", analysis)]:
        for i, cell in enumerate(cells):
            cell["id"] = f"{name}-{i}"
        out[name] = new_notebook(
            cells=cells,
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        )
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, nb in build().items():
        nbformat.write(nb, OUT / f"{name}.ipynb")
        print("wrote", OUT / f"{name}.ipynb")


if __name__ == "__main__":
    main()
