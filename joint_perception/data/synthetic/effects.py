"""The camera simulation: one image's camera (:class:`CameraEffects`, drawn by
:func:`draw_camera_effects`) imaging linear radiance (:func:`apply_camera_effects`).

In linear light: exposure (auto exposure, compensation, room brightness), glare, vignetting,
defocus and motion blur, optical blur, native sensor resolution, shot + read noise; then
white balance (partial adaptation, errors), colour matrix, gamma, S-curve, sharpening and
JPEG compression (:func:`_jpeg`). None of it touches depth, labels or normals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from joint_perception.data.synthetic.color import _LUMA
from joint_perception.data.synthetic.options import SceneOptions


@dataclass
class CameraEffects:
    """The camera of one image, applied by :func:`apply_camera_effects` (zeros disable).

    Attributes:
        exposure_ev: exposure compensation in stops.
        glare: fraction of the light above sensor saturation spread as a wide glow.
        vignetting: relative light loss in the image corners.
        defocus_px: defocus disc radius; motion_px, motion_angle: motion-blur length (pixels)
            and direction (radians); psf_sigma: Gaussian optical blur (pixels).
        sensor_scale: native sensor width / output width (< 1: upsampled, soft and with
            correlated noise; > 1: downsampled, noise averaged).
        shot_noise: shot-noise variance per unit linear signal; read_noise: read-noise std
            (linear light, full well = 1, at the native resolution).
        wb_gains: white-balance gains (R, G, B); color_matrix: 9 numbers of a row-major 3x3
            colour matrix applied after them (empty: identity).
        contrast: strength of the S-shaped tone curve applied after the sRGB-like gamma.
        sharpen: amount of unsharp masking (sigma 1 pixel) after the tone curve.
        jpeg_quality: JPEG quality of the final image (0: no compression).
    """

    exposure_ev: float = 0.0
    glare: float = 0.0
    vignetting: float = 0.0
    defocus_px: float = 0.0
    motion_px: float = 0.0
    motion_angle: float = 0.0
    psf_sigma: float = 0.0
    sensor_scale: float = 1.0
    shot_noise: float = 0.0
    read_noise: float = 0.0
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color_matrix: tuple[float, ...] = ()
    contrast: float = 0.0
    sharpen: float = 0.0
    jpeg_quality: int = 0


def _white_balance(illuminant, r: float, z: np.ndarray, strength: float):
    """Gains of a camera that neutralises a fraction of the light colour (all of it when
    ``strength`` is 0) with per-channel errors; the illuminant's luminance is kept."""
    illum = np.asarray(illuminant, dtype=np.float64)
    illum = illum / float(_LUMA @ illum)
    adapt = 1.0 if strength <= 0 else 0.5 + 0.45 * r
    gains = illum**-adapt * np.exp(strength * z * np.array([1.0, 0.0, 1.0]))
    gains /= float(_LUMA @ (gains * illum))
    return tuple(float(x) for x in gains)


def _color_matrix(r: float, z: np.ndarray, jitter: float) -> tuple[float, ...]:
    """Saturation boost in [1, 1.35] with cross-talk ``jitter``; rows sum to 1 (greys stay)."""
    if jitter <= 0:
        return ()
    sat = 1.0 + 0.35 * r
    M = sat * np.eye(3) + (1.0 - sat) * np.ones((3, 1)) * _LUMA[None, :].astype(np.float64)
    M += jitter * z.reshape(3, 3)
    M /= M.sum(axis=1, keepdims=True)
    return tuple(float(x) for x in M.reshape(-1))


def draw_camera_effects(
    rng: np.random.Generator, options: SceneOptions, width: int, illuminant=(1.0, 1.0, 1.0)
) -> CameraEffects:
    """Draw one image's camera from ``options`` for an image ``width`` pixels wide lit by
    ``illuminant`` (linear RGB). A fixed number of values is drawn whatever the options, so
    switching one effect off leaves the others unchanged."""
    o = options
    r = rng.random(13)
    z = rng.standard_normal(12)
    lo, hi = o.brightness
    bright = math.exp(math.log(lo) + r[0] * (math.log(hi) - math.log(lo)))
    t_rel = min(1.0, 1.0 / bright)  # exposure time, relative to the slowest hand-held one
    gain = min(max(1.0, 1.0 / (bright * t_rel)), 3.0)
    sigma = o.noise / 1.16  # sRGB std at mid grey -> linear std at 0.18
    widths = tuple(o.sensor_widths)
    q0, q1 = o.jpeg_quality
    return CameraEffects(
        exposure_ev=o.exposure_ev[0]
        + r[1] * (o.exposure_ev[1] - o.exposure_ev[0])
        + 0.2 * math.log2(bright),
        glare=o.glare * r[2],
        vignetting=o.vignetting * r[3],
        defocus_px=o.defocus * width * r[4] ** 3,
        motion_px=o.motion_blur * width * r[5] ** 2 * t_rel,
        motion_angle=math.pi * r[6],
        psf_sigma=o.blur,
        sensor_scale=widths[int(r[7] * len(widths))] / width if widths else 1.0,
        shot_noise=0.84 * sigma**2 / 0.18 * math.sqrt(gain),  # the ISP denoises more
        read_noise=0.4 * sigma * math.sqrt(gain),  # at high gain
        wb_gains=_white_balance(illuminant, r[8], z[:3], o.white_balance),
        color_matrix=_color_matrix(r[9], z[3:12], o.color_jitter),
        contrast=o.contrast[0] + r[10] * (o.contrast[1] - o.contrast[0]),
        sharpen=o.sharpen[0] + r[12] * (o.sharpen[1] - o.sharpen[0]),
        jpeg_quality=int(round(q0 + r[11] * (q1 - q0))) if q1 > 0 else 0,
    )


def _disc_kernel(radius: float) -> np.ndarray:
    n = int(math.ceil(radius))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    k = np.clip(radius + 0.5 - np.hypot(xx, yy), 0.0, 1.0).astype(np.float32)
    return k / k.sum()


def _line_kernel(length: float, angle: float) -> np.ndarray:
    n = int(math.ceil(length / 2)) + 1
    k = np.zeros((2 * n + 1, 2 * n + 1), dtype=np.float32)
    t = np.linspace(-length / 2, length / 2, max(2, int(length * 4)))
    x, y = n + t * math.cos(angle), n + t * math.sin(angle)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), (wy * wx).astype(np.float32))
    return k / k.sum()


def _glare(img: np.ndarray, strength: float) -> np.ndarray:
    """Add a wide glow of the light above saturation (lens and sensor veiling glare)."""
    import cv2

    excess = np.maximum(img - 1.0, 0.0)
    if strength <= 0 or not excess.any():
        return img
    H, W = img.shape[:2]
    small = cv2.resize(excess, (max(W // 8, 1), max(H // 8, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(W, H) / 8 / 12)
    return img + np.float32(strength) * cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


def _vignette(img: np.ndarray, strength: float) -> np.ndarray:
    if strength <= 0:
        return img
    H, W = img.shape[:2]
    y = np.linspace(-1.0, 1.0, H, dtype=np.float32)[:, None] ** 2 * (H * H)
    x = np.linspace(-1.0, 1.0, W, dtype=np.float32)[None, :] ** 2 * (W * W)
    r2 = (x + y) / float(H * H + W * W)  # 1 in the corners
    return img * (1.0 - np.float32(strength) * r2 * (0.6 + 0.4 * r2))[..., None]


def _optical_blur(img: np.ndarray, fx: CameraEffects) -> np.ndarray:
    import cv2

    if fx.defocus_px >= 0.5:
        img = cv2.filter2D(img, -1, _disc_kernel(fx.defocus_px), borderType=cv2.BORDER_REFLECT)
    if fx.motion_px >= 1.0:
        kern = _line_kernel(fx.motion_px, fx.motion_angle)
        img = cv2.filter2D(img, -1, kern, borderType=cv2.BORDER_REFLECT)
    if fx.psf_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), fx.psf_sigma)
    return img


def _add_noise(x: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Clip to the sensor's full well, add shot (variance ``shot * x``) and read noise, partly
    shared by the three channels (demosaicking correlates them), clip again."""
    x = np.clip(x, 0.0, 1.0)
    if shot <= 0 and read <= 0:
        return x
    std = np.sqrt(np.float32(shot) * x + np.float32(read * read))
    common = rng.standard_normal(x.shape[:2], dtype=np.float32)[..., None]
    z = rng.standard_normal(x.shape, dtype=np.float32)
    z *= np.float32(0.8)
    z += np.float32(0.6) * common
    z *= std
    z += x
    return np.clip(z, 0.0, 1.0, out=z)


def _sensor(img: np.ndarray, fx: CameraEffects, rng: np.random.Generator) -> np.ndarray:
    """Noise at the native sensor resolution, then the resize to the output size."""
    import cv2

    s = fx.sensor_scale
    if s < 0.95:
        H, W = img.shape[:2]
        size = (max(int(round(W * s)), 8), max(int(round(H * s)), 8))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        small = _add_noise(small, fx.shot_noise, fx.read_noise, rng)
        return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    k = max(s, 1.0)  # averaging k^2 native pixels per output pixel
    return _add_noise(img, fx.shot_noise / k**2, fx.read_noise / k, rng)


def _isp(img: np.ndarray, fx: CameraEffects) -> np.ndarray:
    """White balance, colour matrix, gamma, tone curve and sharpening -> sRGB-like values in
    [0, 1]."""
    import cv2

    img = img * np.asarray(fx.wb_gains, dtype=np.float32)
    if fx.color_matrix:
        img = cv2.transform(img, np.asarray(fx.color_matrix, dtype=np.float32).reshape(3, 3))
    img = cv2.pow(np.clip(img, 0.0, 1.0), 1 / 2.2)
    if fx.contrast > 0:
        img = img + np.float32(fx.contrast) * img * (1.0 - img) * (2.0 * img - 1.0)
    if fx.sharpen > 0:
        img = img + np.float32(fx.sharpen) * (img - cv2.GaussianBlur(img, (0, 0), 1.0))
    return np.clip(img, 0.0, 1.0)


def apply_camera_effects(
    img: np.ndarray, effects: CameraEffects, rng: np.random.Generator
) -> np.ndarray:
    """Image a linear-light (H, W, 3) float32 radiance map exposed to a mean of ~0.2:
    exposure, glare, vignetting, defocus/motion/optical blur, native-resolution sensor
    noise and saturation, white balance, colour matrix, gamma, tone curve and sharpening. Returns
    (H, W, 3) float32 sRGB-like values in [0, 1] (quantisation and JPEG follow in
    :func:`render`)."""
    img = img * np.float32(2.0**effects.exposure_ev)
    img = _glare(img, effects.glare)
    img = _vignette(img, effects.vignetting)
    img = _optical_blur(img, effects)
    img = _sensor(img, effects, rng)
    return _isp(img, effects)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding of a synthetic frame failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
