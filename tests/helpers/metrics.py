"""Folders of NIfTI predictions and references with known answers, for the metrics tests."""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

#: Voxels of 1.5 x 1.5 x 2 mm = 4.5 mm³.
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])
SHAPE = (16, 16, 12)
#: The false-positive block of :func:`write_study` (8 voxels, away from both lesions).
FP_BLOCK = (slice(12, 14), slice(2, 4), slice(2, 4))


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """Write ``array`` as a NIfTI file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def two_lesions(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """Two lesions: a 4x4x4 cube (64 voxels, 0.288 mL) and a 2x2x2 cube (8 voxels)."""
    ref = np.zeros(shape, np.uint8)
    ref[2:6, 2:6, 2:6] = 1
    ref[10:12, 10:12, 8:10] = 1
    return ref


def write_study(root: Path) -> Path:
    """A study with known answers under ``root``.

    - ``ref/``: cases a, b, c with :func:`two_lesions`, and ``healthy_000`` without a file;
    - ``pred/``: binary predictions in both layouts: case_a finds the large lesion only,
      case_b is perfect, case_c is case_a plus one false positive (:data:`FP_BLOCK`);
    - ``prob/`` (case folders) and ``tune/`` (files): probability maps whose lesions peak at
      0.9 (a), 0.7 (b), 0.5 (c), with a false positive at 0.6 in every case.
    """
    ref = two_lesions()
    for case in ("case_a", "case_b", "case_c"):
        save_nifti(root / "ref" / case / "lesion.nii.gz", ref)
    (root / "ref" / "healthy_000").mkdir()
    found_first = np.zeros_like(ref)
    found_first[2:6, 2:6, 2:6] = 1
    with_fp = found_first.copy()
    with_fp[FP_BLOCK] = 1
    save_nifti(root / "pred" / "case_a.nii.gz", found_first)
    save_nifti(root / "pred" / "case_b" / "lesion.nii.gz", ref)
    save_nifti(root / "pred" / "case_c.nii.gz", with_fp)
    for case, peak in (("case_a", 0.9), ("case_b", 0.7), ("case_c", 0.5)):
        prob = np.where(ref > 0, peak, 0.0).astype(np.float32)
        prob[FP_BLOCK] = 0.6
        save_nifti(root / "prob" / case / "lesion_probability.nii.gz", prob)
        save_nifti(root / "tune" / f"{case}.nii.gz", prob)
    return root


def three_lesions(shape: tuple[int, int, int] = (24, 24, 24)) -> np.ndarray:
    """Three 2x2x2 lesions (8 voxels each) in a row along axis 0, at x = 2, 8 and 14."""
    ref = np.zeros(shape, bool)
    for start in (2, 8, 14):
        ref[start : start + 2, 2:4, 2:4] = True
    return ref


def run_evaluate_cli(argv: list[str]) -> int:
    """``sap evaluate ARGV`` in this process; returns the exit status."""
    from sap.cli.evaluate import add_parser

    parser = argparse.ArgumentParser(prog="sap")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)
