"""Write one phantom case as a case folder in the standard layout (see :mod:`sap.data.cases`).

Every file goes through :mod:`sap.io` (atomic writes), and a rewritten folder keeps no stale
file of an earlier case: a healthy case removes an old lesion map, a case written without a
preview removes an old preview.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sap.io import save_nifti_atomic
from sap.labels import DEFAULT_CHANNEL_FILES, DEFAULT_LESION_FILE, DEFAULT_SKELETON_FILE
from sap.phantom.case import PhantomCase
from sap.phantom.render import render_case_png

PREVIEW_FILE = "preview.png"
#: Every file :func:`write_case` may write into a case folder.
WRITTEN_FILES: tuple[str, ...] = (
    *DEFAULT_CHANNEL_FILES.values(),
    DEFAULT_SKELETON_FILE,
    DEFAULT_LESION_FILE,
    PREVIEW_FILE,
)


def write_case(case: PhantomCase, folder: str | Path, render_png: bool = False) -> Path:
    """Write ``case`` into ``folder``: T1, b1000, skeleton (and lesion) NIfTI files.

    Args:
        case: a generated case.
        folder: the case folder; created if needed.
        render_png: also write ``preview.png`` (coronal T1 | b1000 MIP | labels).

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_nifti_atomic(case.t1, case.affine, folder / DEFAULT_CHANNEL_FILES["T1"], np.float32)
    save_nifti_atomic(
        case.b1000, case.b1000_affine, folder / DEFAULT_CHANNEL_FILES["b1000"], np.float32
    )
    save_nifti_atomic(case.skeleton, case.affine, folder / DEFAULT_SKELETON_FILE, np.uint8)
    lesion_path = folder / DEFAULT_LESION_FILE
    if case.lesion is not None:
        save_nifti_atomic(case.lesion, case.affine, lesion_path, np.uint8)
    elif lesion_path.exists():
        lesion_path.unlink()  # a healthy case must not keep a stale lesion map
    preview = folder / PREVIEW_FILE
    if render_png:
        render_case_png(case, preview)
    elif preview.exists():
        preview.unlink()
    return folder


__all__ = ["PREVIEW_FILE", "WRITTEN_FILES", "write_case"]
