"""Image input and output: decoding to :class:`~medrag.records.CXRImage`, DICOM, thumbnails, viewer transforms.

* :mod:`~medrag.imaging.decode` — bytes or a path -> CXRImage (formats, normalisation, metadata);
* :mod:`~medrag.imaging.dicom` — the DICOM sniffer and decoder (windowing, de-identified tags);
* :mod:`~medrag.imaging.limits` — size limits checked before decoding;
* :mod:`~medrag.imaging.convert` — pixel conversions shared by the decoders;
* :mod:`~medrag.imaging.thumbnails` — content-addressed thumbnails and PNG copies;
* :mod:`~medrag.imaging.display` — window/level and other viewer transforms.

8-bit pixels and the pixel hash live in :mod:`medrag.pixels`, image measurements in :mod:`medrag.measure`;
both are re-exported here, as are the names callers use.
"""

from __future__ import annotations

from medrag.imaging.convert import colourfulness
from medrag.imaging.decode import from_array, load_image
from medrag.imaging.dicom import looks_like_dicom
from medrag.imaging.display import apply_window, enhance_contrast, invert
from medrag.imaging.limits import MAX_FILE_BYTES, MAX_PIXELS, MIN_SIDE
from medrag.imaging.thumbnails import (
    THUMBNAIL_JPEG_QUALITY,
    make_thumbnail,
    save_thumbnail,
    store_original,
    store_upload,
)
from medrag.measure import MEASUREMENTS, measure
from medrag.pixels import compute_pixel_hash, to_uint8

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MEASUREMENTS",
    "MIN_SIDE",
    "THUMBNAIL_JPEG_QUALITY",
    "apply_window",
    "colourfulness",
    "compute_pixel_hash",
    "enhance_contrast",
    "from_array",
    "invert",
    "load_image",
    "looks_like_dicom",
    "make_thumbnail",
    "measure",
    "save_thumbnail",
    "store_original",
    "store_upload",
    "to_uint8",
]
