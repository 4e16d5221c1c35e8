"""Uploaded images: size, content-type, format, dimension and decode checks before anything runs.

Every rejection is an :class:`UploadError` (HTTP 4xx) whose message names the upload, so a client
sending a truncated JPEG or a 20000-pixel-wide "image" learns why, and the service never reaches
a decoder error it did not expect.
"""
from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from vinocr.errors import VinocrError

#: Content types accepted for an image part. ``application/octet-stream`` is what curl and many
#: clients send when they do not know better; the bytes are sniffed either way.
IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/bmp", "image/webp",
                       "image/tiff", "application/octet-stream")
#: Pillow format name -> the extension a stored correction gets (all in IMAGE_EXTENSIONS).
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "WEBP": ".webp",
                     "TIFF": ".tif"}


class UploadError(VinocrError):
    """An upload the service refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageLimits:
    """What one uploaded image may be."""

    max_bytes: int = 4 * 1024 * 1024
    max_width: int = 4096
    max_height: int = 1024
    max_pixels: int = 4096 * 1024


@dataclass
class DecodedImage:
    """A checked upload: the original bytes (kept for corrections), its format and the BGR array."""

    data: bytes
    format: str
    image: np.ndarray

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]


def check_content_type(content_type: Optional[str], name: str) -> None:
    """Refuse a part whose declared type is not an image type (415); a missing type is sniffed."""
    if not content_type:
        return
    base = content_type.split(";", 1)[0].strip().lower()
    if base not in IMAGE_CONTENT_TYPES:
        raise UploadError(f"{name}: content type {base!r} is not an image "
                          f"(accepted: {', '.join(IMAGE_CONTENT_TYPES)})", status=415)


def decode_base64(text: object, name: str) -> bytes:
    """The bytes of a base64 JSON field (a ``data:image/...;base64,`` prefix is allowed)."""
    if not isinstance(text, str) or not text:
        raise UploadError(f"{name}: expected a non-empty base64 string")
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        check_content_type(head[5:].split(";", 1)[0], name)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError(f"{name}: not valid base64") from None


def decode_image(data: bytes, name: str, limits: ImageLimits) -> DecodedImage:
    """Check and decode one uploaded image to BGR uint8.

    The dimensions are read from the header (Pillow, no pixel decode) before decoding, so a small
    file claiming a huge canvas (a decompression bomb) is refused without allocating it. Pillow
    then decodes it once to catch truncation (OpenCV fills a cut-off JPEG with grey and returns
    it); the pixels used are OpenCV's, the decoder ``vinocr-predict`` reads files with.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError(f"{name}: empty upload")
    if len(data) > limits.max_bytes:
        raise UploadError(f"{name}: {len(data)} bytes is more than the limit of "
                          f"{limits.max_bytes}", status=413)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = str(probe.format or "")
            width, height = probe.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise UploadError(f"{name}: not a readable image (accepted formats: "
                          f"{', '.join(sorted(FORMAT_EXTENSIONS))})") from None
    if fmt not in FORMAT_EXTENSIONS:
        raise UploadError(f"{name}: image format {fmt or 'unknown'} is not accepted (accepted: "
                          f"{', '.join(sorted(FORMAT_EXTENSIONS))})", status=415)
    if width < 1 or height < 1:
        raise UploadError(f"{name}: image has no pixels ({width}x{height})")
    if width > limits.max_width or height > limits.max_height or \
            width * height > limits.max_pixels:
        raise UploadError(f"{name}: {width}x{height} pixels is larger than the limit of "
                          f"{limits.max_width}x{limits.max_height} ({limits.max_pixels} pixels)",
                          status=413)
    try:
        with Image.open(io.BytesIO(data)) as full:
            full.load()
    except (OSError, ValueError, SyntaxError):
        raise UploadError(f"{name}: the {fmt} data is truncated or corrupt") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.shape[0] != height or image.shape[1] != width:
        raise UploadError(f"{name}: the {fmt} data is truncated or corrupt")
    return DecodedImage(data=data, format=fmt, image=image)
