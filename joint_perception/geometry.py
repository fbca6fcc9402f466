"""Pinhole camera geometry in the REP 103 camera optical frame (x right, y down, z forward).

Conventions used throughout the package:

* ``K`` is the 3x3 intrinsic matrix ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` of a rectified
  image (distortion is the camera driver's job), in pixels; ``P`` is the 3x4 ROS projection
  matrix ``[[fx', s, cx', Tx], [0, fy', cy', Ty], [0, 0, 1, 0]]`` (``sensor_msgs/CameraInfo``).
* Pixel (u, v) = (column, row); the *centre* of pixel (0, 0) is at (0, 0), so an image of width
  W covers ``[-0.5, W - 0.5]``. This is the convention of ``sensor_msgs/CameraInfo`` and of
  ``cv2.resize``; resizing by ``s = W' / W`` maps ``u' = (u + 0.5) * s - 0.5``.
* Depth is metres along the optical axis (z), REP 118; invalid depth is NaN (or <= 0 on input).
"""

from __future__ import annotations

import cv2
import numpy as np


def validate_intrinsics(K) -> np.ndarray:
    """Check a camera matrix and return it as a (3, 3) float64 array (a copy).

    Args:
        K: anything of 9 numbers (3x3 array, flat CameraInfo.k list, ...).

    Raises:
        ValueError: wrong size, non-finite entries, all zeros (an uncalibrated CameraInfo),
            fx <= 0 or fy <= 0, or a last row different from (0, 0, 1).
    """
    arr = np.array(K, dtype=np.float64)
    if arr.size != 9:
        raise ValueError(f"intrinsics K must have 9 entries (3x3), got shape {arr.shape}")
    arr = arr.reshape(3, 3)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"intrinsics K has non-finite entries: {arr.tolist()}")
    if not np.any(arr):
        raise ValueError("intrinsics K is all zeros (camera not calibrated?)")
    if arr[0, 0] <= 0 or arr[1, 1] <= 0:
        raise ValueError(
            f"intrinsics K needs fx > 0 and fy > 0, got fx={arr[0, 0]}, fy={arr[1, 1]}"
        )
    if not np.array_equal(arr[2], [0.0, 0.0, 1.0]) or arr[1, 0] != 0:
        raise ValueError(
            f"intrinsics K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {arr.tolist()}"
        )
    return arr


#: widest horizontal/vertical field of view accepted by :func:`intrinsics_problem` (degrees):
#: a focal length below (size / 2) / tan(MAX_FOV_DEG / 2) is not a pinhole camera
MAX_FOV_DEG = 179.0
#: narrowest field of view accepted (degrees): beyond, depth scaling makes every point infinite
MIN_FOV_DEG = 0.01


def intrinsics_problem(K, width: int, height: int) -> str | None:
    """Why ``K`` is unusable for a ``width`` x ``height`` image, or None.

    On top of :func:`validate_intrinsics` (finite, fx, fy > 0, pinhole form), refuses focal
    lengths that give a field of view wider than :data:`MAX_FOV_DEG` or narrower than
    :data:`MIN_FOV_DEG` (fx = 1e-300 made every back-projected point infinite) and a principal
    point more than one image size outside the image. A pure function: the node warns
    (rate-limited), counts the reason and skips the frame.
    """
    try:
        k = validate_intrinsics(K)
    except ValueError as exc:
        return str(exc)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    for name, f, size in (("fx", fx, width), ("fy", fy, height)):
        if size <= 0:
            return f"image size {width}x{height} is not positive"
        fov = np.degrees(2.0 * np.arctan2(size / 2.0, f))
        if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
            return (
                f"absurd intrinsics: {name}={f:.6g} px gives a {fov:.6g} deg field of view over "
                f"{size} px (accepted {MIN_FOV_DEG}..{MAX_FOV_DEG} deg)"
            )
    if not (-width <= cx <= 2 * width and -height <= cy <= 2 * height):
        return (
            f"absurd intrinsics: principal point ({cx:.6g}, {cy:.6g}) far outside {width}x{height}"
        )
    return None


def _resize_affine(src_size, dst_size) -> np.ndarray:
    """3x3 pixel-coordinate map of a resize from src (h, w) to dst (h, w), pixel-centre aligned."""
    sh, sw = (int(v) for v in src_size)
    dh, dw = (int(v) for v in dst_size)
    if min(sh, sw, dh, dw) <= 0:
        raise ValueError(f"image sizes must be positive, got src {src_size}, dst {dst_size}")
    sx, sy = dw / sw, dh / sh
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def scale_intrinsics(K, src_size, dst_size) -> np.ndarray:
    """Intrinsics of an image resized from ``src_size`` to ``dst_size`` (both ``(h, w)``).

    With ``sx = w'/w`` and ``sy = h'/h``: ``fx' = fx*sx``, ``s' = s*sx``, ``fy' = fy*sy``,
    ``cx' = (cx + 0.5)*sx - 0.5``, ``cy' = (cy + 0.5)*sy - 0.5`` (pixel centres at integer
    coordinates, as ``cv2.resize`` samples; see the module docstring).

    Returns:
        (3, 3) float64.

    Raises:
        ValueError: invalid ``K`` (see :func:`validate_intrinsics`) or non-positive sizes.
    """
    return _resize_affine(src_size, dst_size) @ validate_intrinsics(K)


def scale_projection(P, src_size, dst_size) -> np.ndarray:
    """The 3x4 projection matrix ``P`` of CameraInfo after the same resize as
    :func:`scale_intrinsics` (``Tx``, ``Ty`` scale with ``sx``, ``sy``).

    Returns:
        (3, 4) float64.

    Raises:
        ValueError: ``P`` not 12 finite numbers, or non-positive sizes.
    """
    arr = np.array(P, dtype=np.float64)
    if arr.size != 12 or not np.all(np.isfinite(arr)):
        raise ValueError(f"projection P must be 12 finite numbers (3x4), got {arr.tolist()}")
    return _resize_affine(src_size, dst_size) @ arr.reshape(3, 4)


_RAYS_CACHE: dict[tuple, np.ndarray] = {}
_RAYS_CACHE_SIZE = 4


def pixel_rays(K, height: int, width: int) -> np.ndarray:
    """Viewing ray of every pixel centre, scaled to z = 1: ``K^-1 [u, v, 1]^T``.

    Results are cached (the few most recent (K, size) pairs), since the node asks for the
    same rays every frame; the returned array is read-only and shared.

    Returns:
        (height, width, 3) float32, ``[..., 2] == 1``; x right, y down (REP 103).

    Raises:
        ValueError: invalid ``K`` or non-positive size.
    """
    Kd = validate_intrinsics(K)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    key = (Kd.tobytes(), int(height), int(width))
    rays = _RAYS_CACHE.get(key)
    if rays is not None:
        return rays
    fx, s, cx, fy, cy = Kd[0, 0], Kd[0, 1], Kd[0, 2], Kd[1, 1], Kd[1, 2]
    y = (np.arange(height, dtype=np.float64) - cy) / fy
    x = (np.arange(width, dtype=np.float64)[None, :] - cx - s * y[:, None]) / fx
    rays = np.empty((height, width, 3), dtype=np.float32)
    rays[..., 0] = x
    rays[..., 1] = y[:, None]
    rays[..., 2] = 1.0
    rays.flags.writeable = False
    if len(_RAYS_CACHE) >= _RAYS_CACHE_SIZE:
        _RAYS_CACHE.pop(next(iter(_RAYS_CACHE)))
    _RAYS_CACHE[key] = rays
    return rays


_PLANES_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def pixel_ray_planes(K, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The x and y components of :func:`pixel_rays` as two contiguous (H, W) float32
    planes (cached like the rays, read-only), for planar (cv2) arithmetic."""
    key = (validate_intrinsics(K).tobytes(), int(height), int(width))
    planes = _PLANES_CACHE.get(key)
    if planes is None:
        rays = pixel_rays(K, height, width)
        x, y = np.ascontiguousarray(rays[..., 0]), np.ascontiguousarray(rays[..., 1])
        x.flags.writeable = y.flags.writeable = False
        if len(_PLANES_CACHE) >= _RAYS_CACHE_SIZE:
            _PLANES_CACHE.pop(next(iter(_PLANES_CACHE)))
        planes = _PLANES_CACHE[key] = (x, y)
    return planes


def clear_ray_caches() -> None:
    """Forget the cached :func:`pixel_rays` / :func:`pixel_ray_planes` (e.g. after a frame far
    larger than the steady ones: a 4K frame's rays and planes hold ~170 MB)."""
    _RAYS_CACHE.clear()
    _PLANES_CACHE.clear()


def _check_depth(depth) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty (H, W) array, got shape {depth.shape}")
    if depth.dtype.kind != "f":
        raise ValueError(
            f"depth must be float metres, got {depth.dtype} (convert 16UC1 millimetres first)"
        )
    return depth


def backproject(depth, K, out: np.ndarray | None = None) -> np.ndarray:
    """3-D point of every pixel: ``depth(u, v) * K^-1 [u, v, 1]^T`` in the optical frame.

    Args:
        depth: (H, W) float metres along z; NaN, inf and values <= 0 are invalid.
        K: 3x3 intrinsics of this depth image.
        out: optional preallocated (H, W, 3) float32 result buffer.

    Returns:
        (H, W, 3) float32 points (x right, y down, z forward, metres); all three coordinates
        NaN where the depth is invalid.

    Raises:
        ValueError: non-2-D/non-float depth, invalid ``K``, wrong ``out`` shape.
    """
    depth = _check_depth(depth)
    h, w = depth.shape
    rays = pixel_rays(K, h, w)
    z = valid_depth_or_nan(depth.astype(np.float32, copy=False))
    if out is None:
        out = np.empty((h, w, 3), dtype=np.float32)
    elif out.shape != (h, w, 3) or out.dtype != np.float32:
        raise ValueError(f"out must be ({h}, {w}, 3) float32, got {out.shape} {out.dtype}")
    np.multiply(rays, cv2.merge([z, z, z]), out=out)  # 3x faster than broadcasting z[..., None]
    return out


_F32 = np.finfo(np.float32)


def valid_depth_or_nan(
    z: np.ndarray, out: np.ndarray | None = None, mask: np.ndarray | None = None
) -> np.ndarray:
    """Copy of (H, W) float32 depth ``z`` with NaN wherever it is not finite and > 0
    (cv2.inRange + copyTo: ~3x faster than a numpy mask and np.where).

    ``out`` ((H, W) float32, not ``z``) and ``mask`` ((H, W) uint8 scratch) are written when
    given instead of allocating; the result is ``out``."""
    ok = cv2.inRange(z, float(_F32.tiny), float(_F32.max), dst=mask)
    if out is None:
        out = np.full(z.shape, np.nan, dtype=np.float32)
    else:
        out.fill(np.nan)
    cv2.copyTo(np.ascontiguousarray(z), ok, out)
    return out


_SUM3 = np.ones((1, 3), dtype=np.float32)


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel dot product of two (H, W, 3) float32 arrays -> (H, W) float32.

    OpenCV's per-element multiply and channel-sum transform are ~5x faster here than numpy
    on the interleaved channel axis; NaN propagates."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return cv2.transform(cv2.multiply(a, b), _SUM3).reshape(a.shape[:2])


def _flip_sign(dot: np.ndarray) -> np.ndarray:
    """-1 where ``dot > 0``, else +1 (NaN -> +1), float32; branch-free via cv2.threshold."""
    return cv2.threshold(dot, 0.0, -2.0, cv2.THRESH_BINARY)[1] + np.float32(1.0)


def _scale3(v: np.ndarray, factor: np.ndarray) -> None:
    """``v[..., c] *= factor`` for c in 0..2, in place ((H, W, 3) and (H, W) float32)."""
    np.multiply(v, cv2.merge([factor, factor, factor]), out=v)


def _check_vectors(normals: np.ndarray, rays: np.ndarray | None = None) -> None:
    if normals.ndim != 3 or normals.shape[2] != 3 or normals.dtype != np.float32:
        raise ValueError(f"normals must be (H, W, 3) float32, got {normals.shape} {normals.dtype}")
    if rays is not None and rays.shape != normals.shape:
        raise ValueError(f"normals {normals.shape} and rays {rays.shape} must both be (H, W, 3)")


def orient_towards_camera(normals: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Flip, in place, every normal pointing away from the camera so that ``n . ray <= 0``.

    Args:
        normals: (H, W, 3) float32 (modified in place; NaN stays NaN).
        rays: (H, W, 3) viewing rays of the same pixels (e.g. :func:`pixel_rays`).

    Returns:
        ``normals`` (the same object).

    Raises:
        ValueError: shapes differ or are not (H, W, 3), normals not float32.
    """
    _check_vectors(normals, rays)
    _scale3(normals, _flip_sign(_dot3(normals, rays)))
    return normals


def normalize_vectors(v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Scale (H, W, 3) float32 vectors to unit length in place; NaN where the length is
    < ``eps`` or not finite. Returns ``v``."""
    _check_vectors(v)
    inv = _inverse_norm(_dot3(v, v), eps)
    _scale3(v, inv)
    return v


def _inverse_norm(norm2: np.ndarray, eps: float) -> np.ndarray:
    """1 / sqrt(norm2), NaN where the norm is < eps, NaN or inf (in place on norm2)."""
    ok = (norm2 >= eps * eps) & (norm2 < np.inf)
    np.sqrt(norm2, out=norm2)
    np.divide(np.float32(1.0), norm2, out=norm2)
    return np.where(ok, norm2, np.float32(np.nan))


def normalize_and_orient(normals: np.ndarray, rays: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """:func:`normalize_vectors` and :func:`orient_towards_camera` in one pass (in place).

    Returns ``normals``: unit length, ``n . ray <= 0``, NaN where the length is < ``eps``.
    """
    _check_vectors(normals, rays)
    factor = _inverse_norm(_dot3(normals, normals), eps)
    factor *= _flip_sign(_dot3(normals, rays))
    _scale3(normals, factor)
    return normals


def normals_from_depth(depth, K) -> np.ndarray:
    """Surface normals of a depth image from central differences of its 3-D points.

    ``n = normalize(dP/du x dP/dv)`` with ``dP/du = P(u+1, v) - P(u-1, v)`` and
    ``dP/dv = P(u, v+1) - P(u, v-1)``, then oriented towards the camera (``n . ray < 0``).

    Args:
        depth: (H, W) float metres (invalid: NaN, inf, <= 0).
        K: 3x3 intrinsics.

    Returns:
        (H, W, 3) float32 unit normals in the optical frame; NaN on the one-pixel border,
        where the pixel or one of its four neighbours has invalid depth, and where the
        differences are degenerate.

    Raises:
        ValueError: as :func:`backproject`.
    """
    depth = _check_depth(depth)
    h, w = depth.shape
    P = backproject(depth, K)
    normals = np.full((h, w, 3), np.nan, dtype=np.float32)
    if h < 3 or w < 3:
        return normals
    du = P[1:-1, 2:] - P[1:-1, :-2]
    dv = P[2:, 1:-1] - P[:-2, 1:-1]
    inner = np.cross(du, dv).astype(np.float32, copy=False)
    # the centre pixel itself must be valid too
    inner[np.isnan(P[1:-1, 1:-1, 2])] = np.nan
    rays = np.ascontiguousarray(pixel_rays(K, h, w)[1:-1, 1:-1])
    normals[1:-1, 1:-1] = normalize_and_orient(inner, rays, eps=1e-12)
    return normals
