"""Are our lesion metrics fast on a whole-body exam, and identical to a straightforward reference?

Question: per-exam time of ``sap.metrics`` on a whole-body-sized case (default 256 x 256 x
800 voxels, about 100 reference lesions, split / bridged / missed lesions and false
positives), against a straightforward scipy implementation: ``scipy.ndimage.label``, then a
loop over lesions and predicted components with full-volume boolean masks, Dice and NSD in
each lesion's bounding box (NSD by MONAI's ``compute_surface_dice``). Every number is
asserted identical (NSD to 1e-6: MONAI compares float32 distances).

Second question: the FROC. Reference: for each of ``--thresholds`` thresholds, label
``{p >= t}`` with scipy and loop over its components. ``sap.metrics.exam_froc`` computes the
counts at *every* threshold at once; the counts at the reference thresholds are asserted
identical. Target: >= 5x faster for both.

Run: ``python benchmarks/metrics.py`` (about a minute on 2 cores; ``--small`` for a check).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import ndimage


def make_case(shape: tuple[int, int, int], n_lesions: int, seed: int):
    """Reference mask, prediction mask and probability map with known kinds of errors."""
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, dtype=bool)
    pred = np.zeros(shape, dtype=bool)
    prob = np.zeros(shape, dtype=np.float32)
    grid = np.indices((25, 25, 25)) - 12

    def blob(center, radius, target, value=None):
        lo = np.maximum(np.asarray(center) - 12, 0)
        hi = np.minimum(np.asarray(center) + 13, shape)
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        g = tuple(slice(a - c + 12, b - c + 12) for a, b, c in zip(lo, hi, center))
        d2 = (grid[0][g] ** 2) + (grid[1][g] ** 2) + (grid[2][g] ** 2) * 0.6
        if value is None:
            target[crop] |= d2 <= radius**2
        else:
            bump = (value * np.exp(-d2 / (2.0 * (radius * 0.8) ** 2))).astype(np.float32)
            np.maximum(target[crop], bump, out=target[crop])

    centers = []
    for _ in range(n_lesions):
        center = rng.integers(15, np.asarray(shape) - 15)
        radius = float(rng.uniform(1.5, 8.0))
        blob(center, radius, ref)
        kind = rng.random()
        if kind < 0.15:
            pass  # missed
        elif kind < 0.25:  # split: two halves of a shrunken prediction
            blob(center + np.array([0, 0, int(radius)]), radius * 0.5, pred)
            blob(center - np.array([0, 0, int(radius)]), radius * 0.5, pred)
        else:
            shift = rng.integers(-2, 3, size=3)
            blob(center + shift, radius * rng.uniform(0.7, 1.3), pred)
        blob(center, radius + 1.5, prob, value=float(rng.uniform(0.3, 0.99)))
        centers.append(center)
    # Bridging predictions between pairs of nearby lesions.
    for a, b in zip(centers[:6:2], centers[1:6:2]):
        mid = (a + b) // 2
        blob(mid, 3.0, pred)
    for _ in range(n_lesions):  # false positives of every size
        center = rng.integers(15, np.asarray(shape) - 15)
        radius = float(rng.uniform(1.0, 7.0))
        blob(center, radius, pred)
        blob(center, radius + 1.0, prob, value=float(rng.uniform(0.05, 0.9)))
    return ref, pred, prob


def reference_exam(pred, ref, spacing, min_volume_ml=1.0, tolerance_mm=2.0):
    """Straightforward scipy label-and-loop implementation (26-connectivity)."""
    import torch
    from monai.metrics import compute_surface_dice

    structure = np.ones((3, 3, 3), dtype=bool)
    ref_lab, n_ref = ndimage.label(ref, structure)
    pred_lab, n_pred = ndimage.label(pred, structure)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    objects_ref = ndimage.find_objects(ref_lab)
    objects_pred = ndimage.find_objects(pred_lab)
    lesions = []
    for i in range(1, n_ref + 1):
        lesion = ref_lab == i
        touching = np.unique(pred_lab[lesion])
        touching = touching[touching > 0]
        volume = int(lesion.sum())
        dice = nsd = float("nan")
        if touching.size:
            boxes = [objects_ref[i - 1]] + [objects_pred[j - 1] for j in touching]
            crop = tuple(
                slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
                for a in range(3)
            )
            lesion_crop = ref_lab[crop] == i
            union_crop = np.isin(pred_lab[crop], touching)
            dice = 2.0 * np.sum(lesion_crop & union_crop) / (lesion_crop.sum() + union_crop.sum())
            padded = [
                np.pad(m, 1)[None, None].astype(np.float32) for m in (union_crop, lesion_crop)
            ]
            nsd = float(
                compute_surface_dice(
                    torch.from_numpy(padded[0]),
                    torch.from_numpy(padded[1]),
                    class_thresholds=[tolerance_mm],
                    include_background=True,
                    spacing=[float(s) for s in spacing],
                )[0, 0]
            )
        lesions.append((volume * voxel_ml, bool(touching.size), dice, nsd))
    fp = fp_large = 0
    for j in range(1, n_pred + 1):
        component = pred_lab == j
        if not ref[component].any():
            fp += 1
            fp_large += component.sum() * voxel_ml >= min_volume_ml
    tp = sum(detected for _, detected, _, _ in lesions)
    return {"tp": tp, "fn": n_ref - tp, "fp": fp, "fp_large": int(fp_large), "lesions": lesions}


def reference_froc_counts(prob, ref, thresholds):
    """FP components and detected lesions at each threshold, relabelling every time."""
    structure = np.ones((3, 3, 3), dtype=bool)
    ref_lab, n_ref = ndimage.label(ref, structure)
    fps, tps = [], []
    for t in thresholds:
        mask = prob >= np.float64(t)
        lab, n = ndimage.label(mask, structure)
        fp = 0
        for j in range(1, n + 1):
            if not ref[lab == j].any():
                fp += 1
        fps.append(fp)
        tps.append(int(np.count_nonzero(np.unique(ref_lab[mask]))))
    return np.asarray(tps), np.asarray(fps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 800))
    parser.add_argument("--lesions", type=int, default=100)
    parser.add_argument("--thresholds", type=int, default=10, help="reference FROC thresholds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="96 x 96 x 160 case, 20 lesions")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # MONAI-internal deprecation
    shape = (96, 96, 160) if args.small else tuple(args.shape)
    n_lesions = 20 if args.small else args.lesions
    spacing = (1.6, 1.6, 2.2)

    from sap.metrics import DetectionSettings, evaluate_exam, exam_froc

    print(f"case {shape} voxels, spacing {spacing} mm, {n_lesions} lesions, 26-connectivity")
    ref, pred, prob = make_case(shape, n_lesions, args.seed)
    # Warm up imports (torch, MONAI, cc3d) so that neither side pays them in its timing.
    evaluate_exam(pred[:32, :32, :32], ref[:32, :32, :32], spacing)
    reference_exam(pred[:32, :32, :32], ref[:32, :32, :32], spacing)

    start = time.perf_counter()
    ours = evaluate_exam(pred, ref, spacing, DetectionSettings())
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = reference_exam(pred, ref, spacing)
    t_ref = time.perf_counter() - start

    assert (ours.tp, ours.fn, ours.fp, ours.fp_large) == (
        theirs["tp"],
        theirs["fn"],
        theirs["fp"],
        theirs["fp_large"],
    ), (ours, theirs)
    for lesion, (volume_ml, detected, dice, nsd) in zip(
        ours.lesions, theirs["lesions"], strict=True
    ):
        assert lesion.detected == detected and abs(lesion.volume_ml - volume_ml) < 1e-9
        if detected:
            assert abs(lesion.dice - dice) < 1e-12, (lesion, dice)
            assert abs(lesion.nsd - nsd) < 1e-6, (lesion, nsd)
    print(
        f"detection + Dice + NSD: {ours.n_lesions} lesions (TP {ours.tp}, FN {ours.fn}), "
        f"{ours.n_pred_components} predicted components (FP {ours.fp}, FP >= 1 mL {ours.fp_large})"
    )
    print(f"  sap.metrics.evaluate_exam: {t_ours:7.2f} s per exam")
    print(f"  scipy label-and-loop:      {t_ref:7.2f} s per exam")
    print(f"  ratio: {t_ref / t_ours:.1f}x faster, identical numbers")

    start = time.perf_counter()
    froc = exam_froc(prob, ref, spacing)
    t_froc = time.perf_counter() - start
    thresholds = np.linspace(0.05, 0.95, args.thresholds)
    start = time.perf_counter()
    tp_ref, fp_ref = reference_froc_counts(prob, ref, thresholds)
    t_froc_ref = time.perf_counter() - start
    assert np.array_equal(froc.tp(thresholds), tp_ref), (froc.tp(thresholds), tp_ref)
    assert np.array_equal(froc.fp(thresholds), fp_ref), (froc.fp(thresholds), fp_ref)
    n_events = np.unique(froc.fp_values).size
    print(
        f"FROC: exact counts at every threshold >= {froc.min_prob} ({n_events} distinct FP "
        f"event levels) vs relabelling at {args.thresholds} thresholds"
    )
    print(f"  sap.metrics.exam_froc (all thresholds): {t_froc:7.2f} s per exam")
    print(f"  scipy relabel per threshold ({args.thresholds}):     {t_froc_ref:7.2f} s per exam")
    print(f"  ratio: {t_froc_ref / t_froc:.1f}x faster, identical counts at the shared thresholds")


if __name__ == "__main__":
    main()
