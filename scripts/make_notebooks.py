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
(points, a box, a previous mask) into masks in milliseconds. This notebook drives the
widget from code (`add_point`, `add_box`), so it runs top to bottom without clicks — but you
can click on the widget at any time.

It runs **offline** with `tiny_shapes`, a small SAM trained on synthetic shapes that ships
with sam_widget, on a scene chosen for this tour: a brown rectangle with a small magenta
shape lying inside it. The text describes what `tiny_shapes` does there, and every cell
prints the numbers behind its figure. For the official model change one line:
`MODEL = "vit_b"` (the clicks then land on the sample photo, and the figures differ).
"""),
    code("""
import os
import matplotlib.pyplot as plt
import numpy as np
from sam_widget import SamWidget
from sam_widget.demo import demo_setup

MODEL = os.environ.get("SAM_WIDGET_MODEL", "tiny_shapes")   # "vit_b" for the official SAM
demo = demo_setup(MODEL, seed=258)       # offline: synthetic scene 258 and its true masks
w = SamWidget(demo.image, segmenter=demo.segmenter)
H, W = w.image.shape[:2]
if demo.true_masks is not None:
    click = (445, 233)                   # on the brown rectangle, beside the magenta shape
    inside = (445, 304)                  # on the magenta shape
    rect = next(m for m in demo.true_masks if m[click[1], click[0]])   # visible part of the rectangle
    shape = next(m for m in demo.true_masks if m[inside[1], inside[0]])
else:                                    # a photo: no ground truth, generic points
    click = demo.suggest_point()
    inside = (min(W - 1, click[0] + W // 8), click[1])
    rect = shape = None
w
"""),
    md("""
## 1. One click is ambiguous: three candidates

A single point could mean a part, an object, or a group. SAM therefore answers a single
click with **three candidate masks**, each with its own *predicted IoU* — the model's guess
of how good that mask is. The widget selects the best-scoring one.

Here the click is on the brown rectangle. Does the magenta shape lying inside it belong to
the object? `tiny_shapes` offers both answers: candidate 1 is the rectangle *with* the shape
(filled), candidate 2 the rectangle *without* it (a hole where the shape lies), with almost
the same predicted IoU. Its candidate 3 is a low-confidence guess (predicted IoU about 0.6,
speckled): this small model learned only this one kind of ambiguity — an object with or
without what lies on it — where the official SAM's three outputs typically are a part, an
object and a group.
"""),
    code("""
def overlay(ax, mask, title, color="cyan"):
    ax.imshow(w.image)
    ax.imshow(np.ma.masked_where(~mask, mask), alpha=0.45, cmap="winter", vmin=0, vmax=1)
    if mask.any() and not mask.all():
        ax.contour(mask, levels=[0.5], colors=color, linewidths=1.5)
    for (x, y), lab in zip(w.prompts.points, w.prompts.labels):
        ax.plot(x, y, marker="*", ms=16, color="lime" if lab else "red", mec="black")
    if w.prompts.box is not None:
        x0, y0, x1, y1 = w.prompts.box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=2))
    ax.set_title(title)
    ax.axis("off")


def show(pred, title):
    fig, axes = plt.subplots(1, len(pred), figsize=(4.5 * len(pred), 3.8), squeeze=False)
    for i, ax in enumerate(axes[0]):
        overlay(ax, pred.masks[i], f"candidate {i + 1}: predicted IoU {pred.scores[i]:.3f}")
    fig.suptitle(title)
    plt.show()


w.add_point(*click)
show(w.candidates, f"one positive click at {click}")
print("selected candidate:", w.selected + 1)
"""),
    md("""
The scene is synthetic, so we know the truth: for each candidate, how much of the magenta
shape it covers, and its real IoU with the rectangle alone and with rectangle + shape.
"""),
    code("""
def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())

if rect is not None:
    for i, m in enumerate(w.candidates.masks):
        print(f"candidate {i + 1}: predicted IoU {w.candidates.scores[i]:.3f}, covers {m[shape].mean():4.0%} of the shape, "
              f"true IoU {iou(m, rect):.3f} with the rectangle alone, {iou(m, rect | shape):.3f} with rectangle + shape")
    a, b = w.candidates.masks[:2]
    print(f"candidates 1 and 2 differ in {(a ^ b).sum()} pixels ({1 - iou(a, b):.0%} of their union)")
else:
    print("(a photo: no ground truth here)")
"""),
    md("""
## 2. Refining: a negative point

Following SamPredictor's interactive recipe, every further prompt is answered with **one**
mask, and the low-resolution logits of the mask you had selected are passed back as
`mask_input`. A negative point (label 0) tells the model what is *not* the object: one on
the magenta shape takes the shape out of the selected mask, leaving a hole.
"""),
    code("""
before = w.mask.copy()
w.add_point(*inside, label=0)
after = w.mask
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
overlay(axes[0], before, "before: the selected candidate")
overlay(axes[1], after, "after a negative point on the shape", color="orange")
plt.show()
print(f"{(before ^ after).sum()} pixels changed")
if rect is not None:
    print(f"shape covered: {before[shape].mean():.0%} before, {after[shape].mean():.0%} after; "
          f"true IoU with the rectangle alone: {iou(before, rect):.3f} before, {iou(after, rect):.3f} after")
"""),
    md("""
The logits behind a mask: SAM predicts a low-resolution score map, four times its embedding
grid — **64×64** for `tiny_shapes` (16×16 grid), **256×256** for the official models (64×64
grid). The mask is where the upsampled scores are above 0, so one low-resolution pixel here
covers 8×8 image pixels.
"""),
    code("""
logits = w.candidates.logits[0]
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
im = axes[0].imshow(logits, cmap="RdBu_r", vmin=-abs(logits).max(), vmax=abs(logits).max())
axes[0].set_title(f"low-res logits {logits.shape[0]}x{logits.shape[1]}")
fig.colorbar(im, ax=axes[0])
axes[1].imshow(logits > 0, cmap="gray")
axes[1].set_title("logits > 0")
plt.show()
print("logits:", logits.shape, "for an image of", w.image.shape[:2])
"""),
    md("""
## 3. A click says where, a box says how far

Esc (or `w.clear()`) removes the prompts. A click on the magenta shape is answered with the
shape itself. Draw the rectangle's box instead (press, drag, release) and the answer is the
whole rectangle, the shape inside it included: the box tells the model the object's extent,
which one point cannot.
"""),
    code("""
w.clear()
w.add_point(*inside)
clicked = w.mask.copy()
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
overlay(axes[0], clicked, f"a click at {inside}")
w.clear()
if rect is not None:
    ys, xs = np.nonzero(rect | shape)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
else:
    x0, y0, x1, y1 = max(0, click[0] - 60), max(0, click[1] - 60), min(W, click[0] + 60), min(H, click[1] + 60)
w.add_box(x0, y0, x1, y1)
boxed = w.mask
overlay(axes[1], boxed, f"the box ({x0}, {y0}, {x1}, {y1})", color="yellow")
plt.show()
print(f"click: {clicked.sum()} px; box: {boxed.sum()} px")
if rect is not None:
    print(f"true IoU with the magenta shape: click {iou(clicked, shape):.3f}, box {iou(boxed, shape):.3f}; "
          f"with rectangle + shape: click {iou(clicked, rect | shape):.3f}, box {iou(boxed, rect | shape):.3f}")
"""),
    md("""
## 4. Keep it, and look at the timings

`commit` keeps the mask as an object; the encoder ran once, every prompt only ran the
decoder.
"""),
    code("""
obj = w.commit("my object")
st = w.segmenter.stats
print(f"object {obj.label!r}: {obj.area} px, predicted IoU {obj.score:.3f}")
print(f"image encoder: {st['encoder_calls']} call(s), last {st['last_encode_s'] or 0:.2f} s")
print(f"mask decoder:  {st['decoder_calls']} calls, last {1000 * st['last_decode_s']:.1f} ms")
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
