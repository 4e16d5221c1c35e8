"""Individual image transforms for text-line augmentation.

Every transform is a small stateless class: parameters go in through the constructor (with defaults
that suit 48-px-high text lines and still work on 17x48 low-resolution plates), and
``transform(img, rng)`` returns a new BGR ``uint8`` image of shape ``H'xW'x3`` with ``H', W' >= 1``.
All randomness comes from the ``numpy.random.Generator`` passed in, so a transform is deterministic
for a given generator state and safe to share between data-loader workers.

Range parameters are ``(low, high)`` pairs sampled uniformly; the config layer also accepts a
single number for a range, meaning a fixed value.

Transforms are registered by name in :data:`TRANSFORMS` so YAML configs can refer to them.
There is deliberately no flip transform: mirroring a text line turns characters into other
characters or into non-characters, so the label would no longer match the image.
"""
from __future__ import annotations

import inspect
import logging
import math
from typing import Any, Callable, ClassVar, Dict, Tuple, Type, TypeVar

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FloatRange = Tuple[float, float]
IntRange = Tuple[int, int]

#: name -> transform class; filled by :func:`register`.
TRANSFORMS: Dict[str, Type["Transform"]] = {}

_T = TypeVar("_T", bound=Type["Transform"])


def register(name: str) -> Callable[[_T], _T]:
    """Class decorator adding a transform to :data:`TRANSFORMS` under ``name``."""

    def deco(cls: _T) -> _T:
        if name in TRANSFORMS:
            raise ValueError(f"transform {name!r} is registered twice")
        cls.name = name
        TRANSFORMS[name] = cls
        return cls

    return deco


class Transform:
    """Base class: subclasses set their constructor parameters as attributes of the same name."""

    name: ClassVar[str] = "transform"

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def default_params(cls) -> Dict[str, Any]:
        """Constructor parameters and their defaults (what YAML may set)."""
        sig = inspect.signature(cls.__init__)
        return {
            p.name: p.default
            for p in list(sig.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def params(self) -> Dict[str, Any]:
        """Current parameter values of this instance."""
        return {k: getattr(self, k) for k in self.default_params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.params() == other.params()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in self.params().items()))))


# --------------------------------------------------------------------------- helpers


def _range(value: Any, name: str, lo: float | None = None, hi: float | None = None,
           integer: bool = False) -> Tuple[Any, Any]:
    """Validate a ``(low, high)`` range; a single number means a fixed value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a [low, high] pair, got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} must hold numbers, got {value!r}")
        if integer and not float(v).is_integer():
            raise ValueError(f"{name} must hold integers, got {value!r}")
    a, b = (int(a), int(b)) if integer else (float(a), float(b))
    if a > b:
        raise ValueError(f"{name}: low {a} is greater than high {b}")
    if lo is not None and a < lo:
        raise ValueError(f"{name} must be >= {lo}, got {a}")
    if hi is not None and b > hi:
        raise ValueError(f"{name} must be <= {hi}, got {b}")
    return a, b


def _number(value: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    return float(value)


def _uniform(rng: np.random.Generator, r: Tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _randint(rng: np.random.Generator, r: Tuple[int, int]) -> int:
    """Uniform integer in the closed interval ``[r[0], r[1]]``."""
    return int(rng.integers(r[0], r[1] + 1))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _fit_warp(img: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Perspective-warp ``img`` so its corners land on the quad ``dst``, scaled to fill the frame.

    Mapping the quad's bounding box back onto the full frame keeps every character inside the
    output (a clipped character would make the label wrong) while keeping the perspective look.
    """
    h, w = img.shape[:2]
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    dst = dst.astype(np.float64)
    x0, y0 = dst.min(axis=0)
    x1, y1 = dst.max(axis=0)
    sx = (w - 1) / max(x1 - x0, 1e-6)
    sy = (h - 1) / max(y1 - y0, 1e-6)
    fitted = np.stack([(dst[:, 0] - x0) * sx, (dst[:, 1] - y0) * sy], axis=1).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, fitted)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


# --------------------------------------------------------------------------- geometric


@register("rotate")
class Rotate(Transform):
    """In-plane rotation by an angle drawn from ``[-max_angle, max_angle]`` degrees.

    ``expand=True`` grows the canvas so the rotated line is not clipped: a 320-px line turned by
    5 degrees moves its ends by 14 px, enough to cut the outer characters out of a 48-px crop.
    A detector's axis-aligned box around a tilted line looks the same way.
    """

    def __init__(self, max_angle: float = 10.0, expand: bool = True) -> None:
        self.max_angle = _number(max_angle, "max_angle", 0.0, 90.0)
        if not isinstance(expand, bool):
            raise ValueError(f"expand must be true or false, got {expand!r}")
        self.expand = expand

    def sample_angle(self, rng: np.random.Generator) -> float:
        """The rotation angle in degrees (counter-clockwise positive) for one application."""
        return float(rng.uniform(-self.max_angle, self.max_angle))

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.rotate(img, self.sample_angle(rng))

    def rotate(self, img: np.ndarray, angle: float) -> np.ndarray:
        """Rotate ``img`` by exactly ``angle`` degrees."""
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
        out_w, out_h = w, h
        if self.expand:
            c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
            out_w = max(1, int(math.ceil(w * c + h * s - 1e-6)))
            out_h = max(1, int(math.ceil(h * c + w * s - 1e-6)))
            m[0, 2] += (out_w - w) / 2.0
            m[1, 2] += (out_h - h) / 2.0
        return cv2.warpAffine(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)


@register("rotate3d")
class Rotate3D(Transform):
    """Perspective view of the line as if the plate were turned in 3-D.

    Angles (degrees) around the horizontal axis (``max_x_angle``, tilt), the vertical axis
    (``max_y_angle``, pan) and the view axis (``max_z_angle``); the result is fitted back into the
    original frame size.
    """

    def __init__(self, max_x_angle: float = 15.0, max_y_angle: float = 25.0,
                 max_z_angle: float = 5.0) -> None:
        self.max_x_angle = _number(max_x_angle, "max_x_angle", 0.0, 60.0)
        self.max_y_angle = _number(max_y_angle, "max_y_angle", 0.0, 60.0)
        self.max_z_angle = _number(max_z_angle, "max_z_angle", 0.0, 45.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        ax, ay, az = (math.radians(rng.uniform(-a, a)) for a in
                      (self.max_x_angle, self.max_y_angle, self.max_z_angle))
        rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
        ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
        rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
        rot = rz @ ry @ rx
        corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0],
                            [w / 2, h / 2, 0], [-w / 2, h / 2, 0]], dtype=np.float64)
        pts = corners @ rot.T
        # A camera about 1.5 widths away gives visible but not extreme foreshortening.
        f = 1.5 * max(w, h)
        z = np.maximum(f + pts[:, 2], 1e-3)
        dst = np.stack([f * pts[:, 0] / z, f * pts[:, 1] / z], axis=1)
        return _fit_warp(img, dst)


@register("perspective")
class Perspective(Transform):
    """Random corner jitter of up to ``max_shift`` of the width/height per corner."""

    def __init__(self, max_shift: float = 0.05) -> None:
        self.max_shift = _number(max_shift, "max_shift", 0.0, 0.25)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
        jitter = rng.uniform(-self.max_shift, self.max_shift, size=(4, 2)) * np.array([w, h])
        return _fit_warp(img, src + jitter)


@register("cutting")
class Cutting(Transform):
    """Crop a random strip off the left or right side, like a detector box that is a bit tight.

    The strip is at most ``max_fraction`` of the width and at most ``max_height_ratio`` of the
    height. The second cap matters for long lines: characters are roughly as wide as half the
    line height, so 8 % of a 320x48 VIN line (25 px) would remove a whole character and make the
    label wrong, while 12 px only clips the outer one.
    """

    def __init__(self, max_fraction: float = 0.08, max_height_ratio: float = 0.25) -> None:
        self.max_fraction = _number(max_fraction, "max_fraction", 0.0, 0.5)
        self.max_height_ratio = _number(max_height_ratio, "max_height_ratio", 0.0, 10.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        limit = int(round(min(self.max_fraction * w, self.max_height_ratio * h)))
        limit = min(limit, w - 1)
        if limit < 1:
            return img.copy()
        k = _randint(rng, (1, limit))
        if rng.random() < 0.5:
            return img[:, k:].copy()
        return img[:, : w - k].copy()


@register("top_bottom_cutting")
class TopBottomCutting(Transform):
    """Crop random rows (up to ``max_fraction`` of the height each) off the top and/or bottom."""

    def __init__(self, max_fraction: float = 0.12) -> None:
        self.max_fraction = _number(max_fraction, "max_fraction", 0.0, 0.45)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h = img.shape[0]
        limit = int(round(self.max_fraction * h))
        if limit < 1 or h < 3:
            return img.copy()
        # 0: top only, 1: bottom only, 2: both -- at least one side always loses a row.
        mode = int(rng.integers(0, 3))
        top = _randint(rng, (1, limit)) if mode in (0, 2) else 0
        bottom = _randint(rng, (1, limit)) if mode in (1, 2) else 0
        if top + bottom >= h:
            bottom = max(0, h - 1 - top)
        return img[top: h - bottom].copy()


@register("padding")
class Padding(Transform):
    """Add a random border of up to ``max_fraction`` of the height (top/bottom) or width (sides).

    ``border``: ``constant`` (a random flat colour), ``replicate`` (edge pixels) or ``random``
    (either, per call).
    """

    BORDERS = ("constant", "replicate", "random")

    def __init__(self, max_fraction: float = 0.15, border: str = "random") -> None:
        self.max_fraction = _number(max_fraction, "max_fraction", 0.0, 1.0)
        if border not in self.BORDERS:
            raise ValueError(f"border must be one of {', '.join(self.BORDERS)}, got {border!r}")
        self.border = border

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        # At least one pixel on each side so the transform always does something.
        mh = max(1, int(round(self.max_fraction * h)))
        mw = max(1, int(round(self.max_fraction * w)))
        top, bottom = (_randint(rng, (0, mh)) for _ in range(2))
        left, right = (_randint(rng, (0, mw)) for _ in range(2))
        if top + bottom + left + right == 0:
            top = 1
        mode = self.border
        if mode == "random":
            mode = "constant" if rng.random() < 0.5 else "replicate"
        if mode == "replicate":
            return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_REPLICATE)
        color = [int(c) for c in rng.integers(0, 256, size=3)]
        return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)


@register("downsize")
class Downsize(Transform):
    """Downscale by a factor from ``scale`` and upscale back, simulating a low-resolution camera."""

    _DOWN = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_NEAREST)
    _UP = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)

    def __init__(self, scale: FloatRange = (0.35, 0.8)) -> None:
        self.scale = _range(scale, "scale", 0.01, 1.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        s = _uniform(rng, self.scale)
        sw, sh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        down = cv2.resize(img, (sw, sh), interpolation=self._DOWN[int(rng.integers(len(self._DOWN)))])
        return cv2.resize(down, (w, h), interpolation=self._UP[int(rng.integers(len(self._UP)))])


# --------------------------------------------------------------------------- blur / noise


@register("motion_blur")
class MotionBlur(Transform):
    """Linear motion blur with a kernel length from ``kernel_size`` px in a random direction."""

    def __init__(self, kernel_size: IntRange = (3, 7), angle: FloatRange = (0.0, 180.0)) -> None:
        self.kernel_size = _range(kernel_size, "kernel_size", 2, 64, integer=True)
        self.angle = _range(angle, "angle", -360.0, 360.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        k = _randint(rng, self.kernel_size)
        # Longer than the image makes no sense and blurs a 17-px plate into nothing.
        k = max(2, min(k, max(h, w)))
        angle = _uniform(rng, self.angle)
        size = k if k % 2 == 1 else k + 1
        kernel = np.zeros((size, size), dtype=np.float32)
        c = (size - 1) / 2.0
        dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        # Sample points along the segment so even lengths and oblique angles get a proper line.
        for t in np.linspace(-(k - 1) / 2.0, (k - 1) / 2.0, num=4 * k):
            x, y = int(round(c + t * dx)), int(round(c + t * dy))
            kernel[y, x] = 1.0
        kernel /= kernel.sum()
        return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REPLICATE)


@register("gaussian_blur")
class GaussianBlur(Transform):
    """Gaussian blur with ``sigma`` (px) drawn from a range."""

    def __init__(self, sigma: FloatRange = (0.5, 1.5)) -> None:
        self.sigma = _range(sigma, "sigma", 0.05, 20.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = _uniform(rng, self.sigma)
        k = max(3, int(2 * math.ceil(3 * s) + 1))
        return cv2.GaussianBlur(img, (k, k), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REPLICATE)


@register("gaussian_noise")
class GaussianNoise(Transform):
    """Additive per-pixel, per-channel gaussian noise with standard deviation from ``sigma``."""

    def __init__(self, sigma: FloatRange = (3.0, 12.0)) -> None:
        self.sigma = _range(sigma, "sigma", 0.0, 128.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = _uniform(rng, self.sigma)
        noise = rng.normal(0.0, s, size=img.shape).astype(np.float32)
        return _to_uint8(img.astype(np.float32) + noise)


@register("salt_pepper")
class SaltPepper(Transform):
    """Set a fraction ``amount`` of pixels to black or white (``salt_ratio`` of them white)."""

    def __init__(self, amount: FloatRange = (0.005, 0.03), salt_ratio: float = 0.5) -> None:
        self.amount = _range(amount, "amount", 0.0, 1.0)
        self.salt_ratio = _number(salt_ratio, "salt_ratio", 0.0, 1.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        a = _uniform(rng, self.amount)
        # At least one pixel, so tiny plates are affected too.
        n = max(1, int(round(a * h * w))) if a > 0 else 0
        out = img.copy()
        if n == 0:
            return out
        idx = rng.choice(h * w, size=min(n, h * w), replace=False)
        salt = rng.random(idx.size) < self.salt_ratio
        ys, xs = np.divmod(idx, w)
        out[ys[salt], xs[salt]] = 255
        out[ys[~salt], xs[~salt]] = 0
        return out


@register("jpeg")
class Jpeg(Transform):
    """JPEG re-encoding with a quality drawn from ``quality`` (1-100)."""

    def __init__(self, quality: IntRange = (50, 95)) -> None:
        self.quality = _range(quality, "quality", 1, 100, integer=True)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        q = _randint(rng, self.quality)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 BGR image
            logger.warning("JPEG encoding failed; returning the image unchanged")
            return img.copy()
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return out if out is not None else img.copy()


# --------------------------------------------------------------------------- photometric


@register("brightness")
class Brightness(Transform):
    """Scale intensities by ``factor`` and stretch them around the mean by ``contrast``.

    The default ``contrast`` of 1 keeps contrast unchanged (plain brightness, as in the ALPR
    preset); the VIN preset also varies contrast.
    """

    def __init__(self, factor: FloatRange = (0.6, 1.4), contrast: FloatRange = (1.0, 1.0)) -> None:
        self.factor = _range(factor, "factor", 0.0, 5.0)
        self.contrast = _range(contrast, "contrast", 0.0, 5.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        f = _uniform(rng, self.factor)
        c = _uniform(rng, self.contrast)
        x = img.astype(np.float32) * f
        if c != 1.0:
            mean = float(x.mean())
            x = (x - mean) * c + mean
        return _to_uint8(x)


@register("shade")
class Shade(Transform):
    """Darken a soft-edged band (a shadow) crossing the image at a random angle.

    ``intensity``: how much the band's core is darkened (0 = none, 1 = black); ``width``: the band
    width as a fraction of the image extent along the band's normal.
    """

    def __init__(self, intensity: FloatRange = (0.25, 0.6), width: FloatRange = (0.2, 0.6)) -> None:
        self.intensity = _range(intensity, "intensity", 0.0, 1.0)
        self.width = _range(width, "width", 0.01, 2.0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        theta = rng.uniform(0.0, math.pi)
        strength = _uniform(rng, self.intensity)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        d = xs * math.cos(theta) + ys * math.sin(theta)
        d_min, d_max = float(d.min()), float(d.max())
        extent = max(d_max - d_min, 1.0)
        half = 0.5 * _uniform(rng, self.width) * extent
        center = rng.uniform(d_min, d_max)
        # Flat core with linear fall-off over a third of the half-width: looks like a soft shadow.
        soft = max(half / 3.0, 1e-3)
        mask = np.clip((half - np.abs(d - center)) / soft, 0.0, 1.0)
        gain = 1.0 - strength * mask
        return _to_uint8(img.astype(np.float32) * gain[:, :, None])
