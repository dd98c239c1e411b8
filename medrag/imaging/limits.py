"""Size limits on decoded images, checked from the header before any pixel is decoded."""

from __future__ import annotations

from medrag.errors import ImageTooLargeError, UnsupportedImageError

#: Most pixels (width x height) an image may have; larger is refused before decoding.
MAX_PIXELS = 50_000_000
#: Smallest accepted side in pixels.
MIN_SIDE = 32
#: Largest file read into memory (an uncompressed 50-megapixel 16-bit DICOM is ~100 MB).
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Most pixels MedRAG works with (4096 x 4096, above the largest detectors' 4300 x 3500): a larger
#: PNG/JPEG/TIFF is reduced by a whole factor as it is decoded, before any float copy exists.
MAX_WORKING_PIXELS = 4096 * 4096


def working_factor(width: int, height: int) -> int:
    """The smallest whole factor that brings ``width`` x ``height`` to at most :data:`MAX_WORKING_PIXELS`
    (each side rounded up, as ``PIL.Image.reduce`` does); 1 when it is already small enough."""
    factor = 1
    while -(-width // factor) * -(-height // factor) > MAX_WORKING_PIXELS:
        factor += 1
    return factor


def check_size(width: int, height: int, what: str) -> None:
    """Raise :class:`ImageTooLargeError` above :data:`MAX_PIXELS`, :class:`UnsupportedImageError` below
    :data:`MIN_SIDE`; ``what`` names the image in the message."""
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height / 1e6:.0f} megapixels; MedRAG accepts at most "
            f"{MAX_PIXELS / 1e6:.0f}. Downsample it (a chest X-ray needs about 2048 px) and try again."
        )
    if min(width, height) < MIN_SIDE:
        raise UnsupportedImageError(
            f"{what} is only {width}x{height} pixels; MedRAG needs at least {MIN_SIDE}x{MIN_SIDE}. "
            "Use the full-resolution radiograph, not an icon."
        )


__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "MAX_WORKING_PIXELS", "MIN_SIDE", "check_size", "working_factor"]
