"""Image and text encoders behind one interface (see :mod:`medrag.encoders.base`)."""

from medrag.encoders.base import (
    EncoderSpec,
    FittableEncoder,
    ImageEncoder,
    TextEncoder,
    build_encoder,
    encoder_names,
    get_encoder_spec,
    l2_normalise,
    register_encoder,
    registry,
)

__all__ = [
    "EncoderSpec",
    "FittableEncoder",
    "ImageEncoder",
    "TextEncoder",
    "build_encoder",
    "encoder_names",
    "get_encoder_spec",
    "l2_normalise",
    "register_encoder",
    "registry",
]
