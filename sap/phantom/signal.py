"""MR signal for the phantom: tissue contrast, texture, blur, bias field, scale and noise.

Relative signal levels per tissue (T1-weighted, DWI b = 1000 s/mm²). The contrasts that the
SAP task depends on:

* fatty bone marrow is T1-bright and DWI-dark; cortical bone is dark on both;
* metastases replace marrow: T1-dark and DWI-bright;
* kidneys, spleen, bladder, spinal cord, lymph nodes and brain are DWI-bright too, but outside
  bone, so "bright on DWI" alone does not find lesions: the model must know where bone is.

Every subject draws its own tissue levels (a few per cent), marrow fat fraction, channel
scales (arbitrary scanner units, different per channel), a smooth multiplicative bias field
per channel and a noise level; magnitude images get Rician noise, so the background is
Rayleigh-distributed as in real magnitude MRI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from sap.phantom.anatomy import TISSUE, TISSUES, Anatomy

# (T1, DWI) relative levels; bone is mixed from marrow and cortex, lesions set per lesion.
_LEVELS: dict[str, tuple[float, float]] = {
    "air": (0.0, 0.0),
    "fat": (1.0, 0.03),
    "muscle": (0.35, 0.12),
    "viscera": (0.45, 0.18),
    "lung": (0.06, 0.02),
    "heart": (0.40, 0.08),
    "liver": (0.55, 0.22),
    "spleen": (0.42, 0.78),
    "kidney": (0.38, 0.68),
    "bladder": (0.12, 0.50),
    "brain": (0.50, 0.45),
    "csf": (0.12, 0.06),
    "spinal_cord": (0.42, 0.60),
    "lymph_node": (0.38, 0.88),
    "bone": (0.0, 0.0),
    "lesion": (0.0, 0.0),
}
_MARROW = (0.85, 0.07)
_CORTEX = (0.04, 0.02)


def sample_signal(rng: np.random.Generator) -> dict[str, Any]:
    """Draw one subject's contrast, scale, bias and noise parameters."""
    jitter = np.exp(rng.normal(0.0, 0.06, size=(len(TISSUES), 2)))
    return {
        "levels": (np.array([_LEVELS[name] for name in TISSUES]) * jitter).tolist(),
        "marrow": [_MARROW[0] * rng.uniform(0.8, 1.05), _MARROW[1] * rng.uniform(0.7, 1.3)],
        "cortex": list(_CORTEX),
        "scale": [rng.uniform(400.0, 1200.0), rng.uniform(80.0, 300.0)],
        "noise": [rng.uniform(0.012, 0.03), rng.uniform(0.03, 0.06)],
        "bias_poly": rng.normal(0.0, 0.10, size=(2, 9)).tolist(),
        "bias_stations": rng.normal(0.0, 0.05, size=(2, 3)).tolist(),
        "texture": [rng.uniform(0.03, 0.07), rng.uniform(0.04, 0.09)],
    }


def _interpolation_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation weights [n_out, n_in] stretching n_in samples over n_out."""
    position = np.linspace(0.0, n_in - 1.0, n_out)
    low = np.minimum(np.floor(position).astype(int), n_in - 2)
    weight = (position - low).astype(np.float32)
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    matrix[np.arange(n_out), low] = 1.0 - weight
    matrix[np.arange(n_out), low + 1] = weight
    return matrix


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: int = 4) -> np.ndarray:
    """Unit-variance noise that varies over ~``cell`` voxels: a coarse random grid, upsampled
    trilinearly (as three small matrix products, much cheaper than a full-volume zoom)."""
    coarse_shape = tuple(max(2, -(-n // cell) + 1) for n in shape)
    (nx, ny, nz), (cx, cy, cz) = shape, coarse_shape
    field = rng.standard_normal(coarse_shape).astype(np.float32)
    field = (field.reshape(cx * cy, cz) @ _interpolation_matrix(nz, cz).T).reshape(cx, cy, nz)
    field = np.matmul(_interpolation_matrix(ny, cy), field)  # (cx, ny, nz)
    field = (_interpolation_matrix(nx, cx) @ field.reshape(cx, ny * nz)).reshape(nx, ny, nz)
    return field / (field.std() + 1e-6)


def _bias_field(shape: tuple[int, ...], poly: list[float], stations: list[float]) -> np.ndarray:
    """exp(quadratic polynomial + cosines along z): smooth, like coil and station shading."""
    u, v, w = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape)
    u, v, w = u[:, None, None], v[None, :, None], w[None, None, :]
    terms = (u, v, w, u * u, v * v, w * w, u * v, u * w, v * w)
    log_field = sum(c * t for c, t in zip(poly, terms))
    log_field = log_field + sum(
        a * np.cos(np.pi * (m + 1) * (w + 1) / 2) for m, a in enumerate(stations)
    )
    return np.exp(log_field).astype(np.float32)


def block_mean(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Average non-overlapping blocks (edges padded), i.e. a coarser acquisition grid."""
    if all(f == 1 for f in factors):
        return array
    pad = [(0, (-n) % f) for n, f in zip(array.shape, factors)]
    padded = np.pad(array, pad, mode="edge")
    nx, ny, nz = (n // f for n, f in zip(padded.shape, factors))
    fx, fy, fz = factors
    return padded.reshape(nx, fx, ny, fy, nz, fz).mean(axis=(1, 3, 5), dtype=np.float64)


def coarse_affine(affine: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Affine of :func:`block_mean`'s grid: voxel centres at the centre of each block."""
    step = np.eye(4)
    step[:3, :3] = np.diag(factors)
    step[:3, 3] = [(f - 1) / 2 for f in factors]
    return affine @ step


def synthesize(
    rng: np.random.Generator,
    params: dict[str, Any],
    anatomy: Anatomy,
    lesion_map: np.ndarray,
    lesion_levels: list[tuple[float, float]],
    dwi_factors: tuple[int, int, int] = (1, 1, 1),
    marrow_levels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """T1 and b1000 images (float32); b1000 on the block-averaged grid when ``dwi_factors`` > 1.

    ``marrow_levels`` (``(2, X, Y, Z)``, :mod:`sap.phantom.marrow`) replaces the subject's one
    marrow level per channel by a level per voxel.
    """
    levels = np.asarray(params["levels"], dtype=np.float32)
    bone = anatomy.tissue == TISSUE["bone"]
    lesion = lesion_map > 0
    fraction = anatomy.marrow
    images = []
    for channel in range(2):
        image = levels[:, channel][anatomy.tissue]
        marrow, cortex = params["marrow"][channel], params["cortex"][channel]
        if marrow_levels is not None:  # float32, as a Python float level is taken here
            marrow = marrow_levels[channel][bone].astype(np.float32)
        image[bone] = (fraction[bone] * marrow + (1 - fraction[bone]) * cortex).astype(np.float32)
        if lesion.any():
            per_lesion = np.array(
                [0.0] + [level[channel] for level in lesion_levels], dtype=np.float32
            )
            # Metastases also erode cortex: at least half of a lesion voxel is tumour.
            share = 0.5 + 0.5 * fraction[lesion]
            heterogeneity = np.exp(0.15 * rng.standard_normal(int(lesion.sum()))).astype(np.float32)
            image[lesion] = (
                share * per_lesion[lesion_map[lesion]] * heterogeneity + (1 - share) * cortex
            )
        body = anatomy.tissue > 0
        texture = 1.0 + params["texture"][channel] * smooth_noise(rng, image.shape)
        image = np.where(body, image * texture, image).astype(np.float32)
        image = ndimage.gaussian_filter(image, 0.5)  # point-spread function
        image *= _bias_field(
            image.shape, params["bias_poly"][channel], params["bias_stations"][channel]
        )
        if channel == 1:
            image = block_mean(image, dwi_factors)
        sigma = params["noise"][channel]
        real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(image.shape, dtype=np.float32)
        magnitude = np.sqrt(real * real + imaginary * imaginary) * params["scale"][channel]
        images.append(magnitude.astype(np.float32))
    return images[0], images[1]


__all__ = ["block_mean", "coarse_affine", "sample_signal", "smooth_noise", "synthesize"]
