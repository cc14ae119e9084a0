"""Masks out of the notebook and back in: COCO, PNG label images, measurement tables and
the session save file.

Plain functions on plain data (file paths, ``(N, H, W)`` bool stacks, lists of labels):
no torch and no widgets here, so scripts, the command line and the widget all call the
same code. pycocotools, OpenCV, scikit-image and pandas are imported only when a
function needs them.

>>> import sam_widget.io as sio
>>> sio.to_coco(["a.jpg"], [masks], labels=[["cat", "dog"]], scores=[[0.97, 0.91]], path="ann.json")
>>> ds = sio.read_coco("ann.json", image_dir="images/")      # ds.images[0].objects[0].mask
>>> sio.export_png("out/", ["a.jpg"], [masks], labels=[["cat", "dog"]], per_object=True)
>>> df = sio.measurements(["a.jpg"], [masks], labels=[["cat", "dog"]], pixel_size=0.5)
>>> sio.write_session("work.json", images); data = sio.read_session("work.json")

Coordinates: image pixels, x = column, y = row; boxes are XYXY except COCO's ``bbox``
field, which is XYWH by COCO's convention.
"""

from ._common import FormatError, atomic_write, atomic_write_bytes, safe_name
from .coco import build_categories, to_coco
from ._coco_read import read_coco
from .measure import MEASUREMENT_COLUMNS, measurements
from .png import LabelObject, export_png, label_image, read_label_image
from .polygons import DEFAULT_TOLERANCE, mask_to_polygons, polygon_crossing, polygons_to_mask
from .prompts import PromptRecord
from .records import EXTENSION_KEY, CocoDataset, CocoImage, CocoObject
from .rle import decode_rle, encode_mask, mask_bbox_xyxy
from .session import (
    SESSION_FORMAT,
    SESSION_VERSION,
    SessionData,
    SessionImage,
    SessionObject,
    array_sha256,
    read_session,
    write_session,
)

__all__ = [
    "FormatError",
    "to_coco",
    "read_coco",
    "CocoDataset",
    "CocoImage",
    "CocoObject",
    "PromptRecord",
    "export_png",
    "read_label_image",
    "label_image",
    "LabelObject",
    "measurements",
    "MEASUREMENT_COLUMNS",
    "write_session",
    "read_session",
    "SessionData",
    "SessionImage",
    "SessionObject",
    "SESSION_FORMAT",
    "SESSION_VERSION",
    "array_sha256",
    "encode_mask",
    "decode_rle",
    "mask_bbox_xyxy",
    "mask_to_polygons",
    "polygons_to_mask",
    "polygon_crossing",
    "DEFAULT_TOLERANCE",
    "build_categories",
    "safe_name",
    "atomic_write",
    "atomic_write_bytes",
    "EXTENSION_KEY",
]
