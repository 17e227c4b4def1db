"""Safe file writing: nothing a user already has is lost or left half-written.

Every file `sap` writes goes through :func:`atomic_write`: the content is written to a
temporary file in the destination folder, then moved into place with :func:`os.replace`,
which is atomic on POSIX and Windows. A crash or a full disk leaves either the old file or
the new one, never a truncated mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically.

    Args:
        path: final destination; its parent folder is created if needed.
        writer: called with a temporary path (same folder, same suffixes as ``path``, so
            libraries that pick a format from the extension, like nibabel, still do) and
            must write the complete file there.

    Returns:
        The final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write a binary file atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save_nifti_atomic(
    array: np.ndarray, affine: np.ndarray, path: str | Path, dtype: np.dtype | type | None = None
) -> Path:
    """Save a 3D array as NIfTI (``.nii`` or ``.nii.gz``) atomically.

    Args:
        array: voxel values in array axis order (i, j, k) matching ``affine``.
        affine: 4x4 voxel-to-scanner (RAS+, mm) matrix.
        path: destination file.
        dtype: on-disk data type; defaults to the array's own.
    """
    import nibabel as nib

    data = np.asarray(array)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.header.set_data_dtype(data.dtype)
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


__all__ = ["atomic_write", "save_nifti_atomic", "write_bytes_atomic", "write_text_atomic"]
