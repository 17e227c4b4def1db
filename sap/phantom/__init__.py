"""Synthetic whole-body MRI cohorts: the phantom every `sap` feature can run on.

A phantom case is a two-channel whole-body MRI (``T1``, ``b1000``) of a synthetic adult from
vertex to upper thigh, with the skeleton labelled in the paper's 9 regions and, for metastatic
cases, bone metastases labelled as lesions. It is written in the same folder layout as real
data (see :mod:`sap.data.cases`), so discovery, validation, preprocessing, training, inference
and evaluation run on it without special cases::

    cohort/
      cohort.json                 parameters, seeds, per-case lesion count and volumes (mL)
      healthy_000/  T1.nii.gz  b1000.nii.gz  skeleton.nii.gz  [preview.png]
      metastatic_000/  T1.nii.gz  b1000.nii.gz  skeleton.nii.gz  lesion.nii.gz  [preview.png]

Images are float32 in arbitrary scanner units; ``skeleton`` is uint8 0..9 (indices of
``sap.labels.SKELETON_LABELS``), ``lesion`` uint8 0/1. Affines are RAS+ with the array axes
running left->right, posterior->anterior, inferior->superior and anisotropic voxels.

What is realistic and what is not: the contrasts that matter for SAP are modelled (marrow
T1-bright/DWI-dark, lesions T1-dark/DWI-bright, DWI-bright organs, cord and lymph nodes outside
bone), as are the lesion statistics of the paper (heavy-tailed count, median ~0.5 mL, about a
quarter >= 1 mL; see :mod:`sap.phantom.lesions` for the voxel-size clamp) and per-subject
size, pose, intensity, bias field and noise. Bone shapes are simple solids: good enough to
learn "where is bone and which bone", not an anatomical atlas. Ribs, skull, forearms and tibiae
are drawn as (unlabelled) bone, as in the paper's label maps; lesions are placed only in the
9 labelled regions. By default the marrow is uniformly fatty, so inside bone a lesion
stands out by its voxels alone; ``marrow="adult"`` (:mod:`~sap.phantom.marrow`) adds red
marrow in the axial skeleton, benign focal marrow lesions and less DWI-bright (sclerotic)
metastases, as in the paper's prostate-cancer cohort.

Determinism: the same seed and arguments give byte-identical files. Each case has its own
seed (:func:`case_seed`), and anatomy, lesions, contrast and noise use separate random
streams, so a healthy and a metastatic case with the same case seed share one body.

Modules, in the order a case is made: :mod:`~sap.phantom.geometry` (grid, frames, solids),
:mod:`~sap.phantom.subject` (draw size and pose), :mod:`~sap.phantom.body` (the reference
adult, painted through :mod:`~sap.phantom.painter` into an :mod:`~sap.phantom.anatomy`),
:mod:`~sap.phantom.lesions`, :mod:`~sap.phantom.marrow`, :mod:`~sap.phantom.signal` (MR
contrast and noise),
:mod:`~sap.phantom.generate` (one case), :mod:`~sap.phantom.write` and
:mod:`~sap.phantom.render` (files), :mod:`~sap.phantom.cohort` (a cohort on disk).
"""

from __future__ import annotations

from sap.phantom.anatomy import TISSUES
from sap.phantom.case import PhantomCase
from sap.phantom.cohort import COHORT_FILE, case_seed, generate_cohort
from sap.phantom.generate import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING_MM,
    MAX_LESIONS,
    MIN_LESION_VOXELS,
    generate_case,
    make_grid,
)
from sap.phantom.render import render_case_png
from sap.phantom.write import PREVIEW_FILE, write_case

__all__ = [
    "COHORT_FILE",
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING_MM",
    "MAX_LESIONS",
    "MIN_LESION_VOXELS",
    "PREVIEW_FILE",
    "TISSUES",
    "PhantomCase",
    "case_seed",
    "generate_case",
    "generate_cohort",
    "make_grid",
    "render_case_png",
    "write_case",
]
