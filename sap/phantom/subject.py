"""Draw one subject: size, fat, spinal curvature, organs, lymph nodes and pose.

Every number comes from the anatomy random stream, in a fixed order, so a case seed always
gives the same body. The body is then fitted into the field of view (shrunk and moved) so
every bone label stays in view and the skin never touches the edge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sap.phantom.body import Builder
from sap.phantom.geometry import Grid

#: Vertical extent (mm below the vertex) that must fit in the field of view: head to upper
#: thigh, so that the femurs (label "femurs") are always in view.
REQUIRED_DEPTH_MM = 1000.0


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _normal(rng: np.random.Generator, sd: float, limit: float) -> float:
    return float(np.clip(rng.normal(0.0, sd), -limit, limit))


def sample_subject(rng: np.random.Generator, grid: Grid) -> dict[str, Any]:
    """Draw one subject's size, shape and pose, then fit the body into the field of view.

    When the posed body (arms included) would touch the sides of the field of view, or the
    head-to-upper-thigh extent does not fit in its height, the whole body is scaled down
    until it fits, so every bone label stays in view and the skin never touches the edge.

    Args:
        rng: the case's anatomy random stream.
        grid: the voxel grid the body must fit in.

    Returns:
        The subject's parameters (sizes in mm, angles in degrees, ``body_scale``,
        ``fit_to_fov``), as :func:`sap.phantom.body.build_anatomy` takes them.
    """
    height = _uniform(rng, 0.88, 1.06)
    scale = np.array(
        [height * _uniform(rng, 0.95, 1.05), height * _uniform(rng, 0.95, 1.05), height]
    )
    p: dict[str, Any] = {
        "fat_mm": _uniform(rng, 6.0, 26.0),
        "muscle_wall_mm": _uniform(rng, 12.0, 20.0),
        # About x (pitch: small, the back lies on the table), y (roll), z (yaw).
        "tilt_deg": [_normal(rng, 0.7, 1.5), _normal(rng, 1.5, 3.0), _normal(rng, 2.0, 4.0)],
        "shift_mm": [_normal(rng, 6.0, 12.0), _normal(rng, 5.0, 10.0)],
        "vertex_margin_mm": _uniform(rng, 8.0, 35.0),
        "arm_abduction_deg": [_uniform(rng, -3.0, 5.0), _uniform(rng, -3.0, 5.0)],
        "arm_flexion_deg": [_normal(rng, 3.0, 6.0), _normal(rng, 3.0, 6.0)],
        "leg_abduction_deg": [_uniform(rng, -2.0, 4.0), _uniform(rng, -2.0, 4.0)],
        "leg_flexion_deg": [_normal(rng, 2.0, 4.0), _normal(rng, 2.0, 4.0)],
        "kyphosis": _uniform(rng, 0.7, 1.3),
        "scoliosis_mm": _normal(rng, 4.0, 10.0),
        "kidney_shift_mm": [_normal(rng, 8.0, 15.0), _normal(rng, 8.0, 15.0)],
        "spleen_size": _uniform(rng, 0.8, 1.3),
        "bladder_fill": _uniform(rng, 0.6, 1.2),
        "body_scale": scale.tolist(),
    }
    n_nodes = 3 + int(rng.poisson(3.0))
    p["lymph_nodes"] = [_sample_node(rng) for _ in range(n_nodes)]
    fit = _fit_to_field_of_view(grid, p)
    p["body_scale"] = [float(s * fit) for s in scale]
    p["fit_to_fov"] = fit
    return p


def _fit_to_field_of_view(grid: Grid, p: dict[str, Any]) -> float:
    """Largest scale factor <= 1 at which the body outline stays inside the field of view.

    The outline is drawn on a coarse grid with the same field of view (cheap) and measured;
    the body is shrunk when it is wider or deeper than the field of view, and moved (its
    ``shift_mm`` changed in ``p``) when it sticks out of one side, until it clears every side
    but the bottom (the thighs leave the field of view on purpose) by about one voxel.
    """
    fov_low = np.asarray(grid.origin_mm) - np.asarray(grid.spacing_mm) / 2
    fov_high = fov_low + np.asarray(grid.shape) * np.asarray(grid.spacing_mm)
    coarse_mm = max(8.0, *grid.spacing_mm)
    coarse = Grid(
        tuple(max(2, int(np.ceil((h - lo) / coarse_mm))) for lo, h in zip(fov_low, fov_high)),
        (coarse_mm,) * 3,
        tuple(float(lo + coarse_mm / 2) for lo in fov_low),
    )
    margin = np.asarray(grid.spacing_mm) + coarse_mm / 2
    low_limit, high_limit = fov_low + margin, fov_high - margin
    base = np.asarray(p["body_scale"], dtype=np.float64)
    # The required height (vertex to upper thigh) comes first.
    height_room = high_limit[2] - fov_low[2]
    fit = min(1.0, height_room / ((REQUIRED_DEPTH_MM + p["vertex_margin_mm"]) * base[2]))
    for _ in range(8):
        builder = Builder(coarse, dict(p, body_scale=(base * fit).tolist()))
        builder.outline()
        inside = np.argwhere(builder.painter.body_depth > 0)
        if len(inside) == 0:
            break
        low = coarse.origin_mm + inside.min(axis=0) * coarse_mm - coarse_mm / 2
        high = coarse.origin_mm + inside.max(axis=0) * coarse_mm + coarse_mm / 2
        extent, room = (high - low)[:2], (high_limit - low_limit)[:2]
        if np.any(extent > room):
            fit *= 0.99 * float(np.min(room / extent))
            continue
        move = np.maximum(low_limit - low, 0.0) - np.maximum(high - high_limit, 0.0)
        if not np.any(move[:2]):
            break
        p["shift_mm"] = [float(s + m) for s, m in zip(p["shift_mm"], move[:2])]
    return float(fit)


# Lymph-node stations: centre (x, y, depth below vertex) and jitter, in reference mm.
_NODE_STATIONS = (
    ((30, -15, 680), (12, 10, 60)),  # para-aortic
    ((-30, -15, 680), (12, 10, 60)),
    ((60, 5, 830), (15, 15, 30)),  # iliac
    ((-60, 5, 830), (15, 15, 30)),
    ((90, 60, 905), (15, 10, 15)),  # inguinal
    ((-90, 60, 905), (15, 10, 15)),
    ((125, -5, 385), (12, 15, 20)),  # axillary
    ((-125, -5, 385), (12, 15, 20)),
    ((40, 10, 255), (8, 10, 25)),  # cervical
    ((-40, 10, 255), (8, 10, 25)),
    ((0, 20, 420), (20, 10, 30)),  # mediastinal
)


def _sample_node(rng: np.random.Generator) -> dict[str, Any]:
    centre, jitter = _NODE_STATIONS[int(rng.integers(len(_NODE_STATIONS)))]
    position = np.asarray(centre, dtype=float) + rng.uniform(-1, 1, 3) * np.asarray(jitter)
    radii = rng.uniform(4.0, 9.0) * rng.uniform(0.7, 1.0, 3)
    return {"centre": position.round(1).tolist(), "radii_mm": radii.round(2).tolist()}


__all__ = ["REQUIRED_DEPTH_MM", "sample_subject"]
