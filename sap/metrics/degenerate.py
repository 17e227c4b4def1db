"""Flags for predictions that score well on detection metrics without finding anything.

Any-overlap matching (the paper's rule, kept) lets one huge component "detect" every lesion
with no false positive, and a constant probability map reach the maximum FROC-AUC. These
checks make such predictions visible: each returns the reasons (plain sentences) why an
exam's prediction looks degenerate, and :func:`warn_degenerate` raises them as a
:class:`DegeneratePredictionWarning`. Definitions and thresholds: ``docs/metrics.md``
("Degenerate predictions").
"""

from __future__ import annotations

import warnings

import numpy as np

#: One predicted component overlapping this many reference lesions is flagged ...
MERGED_LESIONS_FLAG = 3
#: ... and so is one overlapping at least this fraction of an exam's lesions (and at least 2).
MERGED_FRACTION_FLAG = 0.5
#: A prediction covering more than this fraction of the volume (of the body when a body mask
#: is given) is flagged; for probability maps, the voxels at or above ``min_prob`` count.
VOLUME_FRACTION_FLAG = 0.5
#: A probability map whose values all lie within this range of each other is (near-)constant.
CONSTANT_SPREAD = 0.01
#: Body mask from an image: voxels brighter than this fraction of its 99th percentile.
BODY_THRESHOLD = 0.1
#: A body mask smaller than this fraction of the volume is not trusted (a blank image).
MIN_BODY_FRACTION = 0.01

_DOCS = "see docs/metrics.md, 'Degenerate predictions'"


class DegeneratePredictionWarning(UserWarning):
    """A prediction whose detection numbers look good for the wrong reason (one blob, a constant)."""


def body_mask_from_image(image: np.ndarray) -> np.ndarray | None:
    """A rough body mask of an MR image: voxels above :data:`BODY_THRESHOLD` x its 99th
    percentile; None when that is under :data:`MIN_BODY_FRACTION` of the volume.

    Good enough to tell "most of the body" from "a lesion": air and background are dark in
    T1 and DWI alike; lungs may fall out, which only makes the body smaller.

    >>> image = np.zeros((4, 4, 4)); image[1:3] = 100.0
    >>> float(body_mask_from_image(image).mean())
    0.5
    """
    image = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(image)
    if not finite.any():
        return None
    high = float(np.percentile(image[finite], 99))
    body = finite & (image > BODY_THRESHOLD * high) if high > 0 else np.zeros(image.shape, bool)
    return body if body.mean() >= MIN_BODY_FRACTION else None


def covered_fraction(mask: np.ndarray, body_mask: np.ndarray | None = None) -> tuple[float, str]:
    """How much of the patient ``mask`` covers: ``(fraction, "volume" or "body")``.

    The fraction of all voxels, or, with a body mask, the larger of that and the fraction of
    the body's voxels (a prediction of the whole body is flagged however small the body is in
    the field of view).

    >>> mask = np.zeros((4, 4, 4), bool); mask[:2] = True
    >>> body = np.zeros((4, 4, 4), bool); body[:3] = True
    >>> covered_fraction(mask), covered_fraction(mask, body)
    ((0.5, 'volume'), (0.6666666666666666, 'body'))
    """
    volume = float(np.count_nonzero(mask) / mask.size) if mask.size else 0.0
    if body_mask is None:
        return volume, "volume"
    body = np.asarray(body_mask) != 0
    if body.shape != mask.shape:
        raise ValueError(
            f"body_mask must be on the prediction's grid; got shapes {body.shape} and {mask.shape}."
        )
    n_body = np.count_nonzero(body)
    inside = float(np.count_nonzero(mask & body) / n_body) if n_body else 0.0
    return (inside, "body") if inside > volume else (volume, "volume")


def mask_flags(
    max_lesions_per_component: int, n_lesions: int, covered: tuple[float, str]
) -> tuple[str, ...]:
    """Reasons a binary prediction looks degenerate (empty when it does not).

    Args:
        max_lesions_per_component: most reference lesions one predicted component overlaps.
        n_lesions: reference lesions of the exam.
        covered: :func:`covered_fraction` of the prediction.

    >>> mask_flags(3, 10, (0.01, "volume"))
    ('one predicted component covers 3 of 10 reference lesions',)
    >>> mask_flags(1, 10, (0.01, "volume"))
    ()
    """
    reasons = []
    merged = max_lesions_per_component
    if merged >= 2 and (
        merged >= MERGED_LESIONS_FLAG or merged >= MERGED_FRACTION_FLAG * n_lesions
    ):
        reasons.append(f"one predicted component covers {merged} of {n_lesions} reference lesions")
    fraction, where = covered
    if fraction > VOLUME_FRACTION_FLAG:
        reasons.append(f"the prediction covers {100 * fraction:.0f} % of the {where}")
    return tuple(reasons)


def probability_flags(
    prob: np.ndarray, min_prob: float, body_mask: np.ndarray | None = None
) -> tuple[str, ...]:
    """Reasons a probability map gives a degenerate FROC (empty when it does not).

    A map that is (near-)constant at or above ``min_prob``, or at or above ``min_prob`` over
    most of the volume (body), is one component touching every lesion at low thresholds:
    sensitivity 1 at 0 false positives, the maximum FROC-AUC.

    >>> probability_flags(np.full((4, 4, 4), 0.3), min_prob=0.01)[0]
    'the probability map is constant (0.3 everywhere)'
    """
    low, high = float(np.min(prob)), float(np.max(prob))
    reasons = []
    if high >= min_prob and high - low < CONSTANT_SPREAD:
        where = f"{low:.3g} everywhere" if high == low else f"between {low:.3g} and {high:.3g}"
        reasons.append(f"the probability map is {'' if high == low else 'near-'}constant ({where})")
    fraction, part = covered_fraction(np.asarray(prob) >= np.float64(min_prob), body_mask)
    if fraction > VOLUME_FRACTION_FLAG:
        reasons.append(
            f"the probability map reaches min_prob={min_prob:g} over {100 * fraction:.0f} % of "
            f"the {part}: at the FROC's lowest thresholds one component covers most of it"
        )
    return tuple(reasons)


def degenerate_message(reasons: tuple[str, ...] | list[str], case_id: str | None = None) -> str:
    """The warning text for an exam's reasons."""
    where = f"Case {case_id!r}: " if case_id else ""
    return (
        f"{where}degenerate prediction: {'; '.join(reasons)}. Its sensitivity, precision, F2, "
        f"FP per exam and FROC-AUC are not meaningful; read Dice and volume_ratio ({_DOCS})."
    )


def warn_degenerate(
    reasons: tuple[str, ...] | list[str], case_id: str | None = None, stacklevel: int = 3
) -> None:
    """Issue one :class:`DegeneratePredictionWarning` for ``reasons`` (nothing when empty)."""
    if reasons:
        warnings.warn(
            degenerate_message(reasons, case_id), DegeneratePredictionWarning, stacklevel=stacklevel
        )


__all__ = [
    "BODY_THRESHOLD",
    "CONSTANT_SPREAD",
    "MIN_BODY_FRACTION",
    "MERGED_FRACTION_FLAG",
    "MERGED_LESIONS_FLAG",
    "VOLUME_FRACTION_FLAG",
    "DegeneratePredictionWarning",
    "body_mask_from_image",
    "covered_fraction",
    "degenerate_message",
    "mask_flags",
    "probability_flags",
    "warn_degenerate",
]
