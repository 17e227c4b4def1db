"""Atomic file writes with the user's umask: a crash or a full disk never leaves a half file.

Content goes to a temporary file in the destination folder, then :func:`os.replace` moves it
into place (atomic on POSIX and Windows): the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically.

    Args:
        path: final destination; its parent folder is created if needed.
        writer: called with a temporary path (same folder, same suffixes as ``path``, so
            libraries that pick a format from the extension, like nibabel, still do) and
            must write the complete file there.

    Returns:
        The final path.

    Raises:
        OSError: the file cannot be written; the message names ``path`` (not the temporary
            file) and the temporary file is gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name.lstrip(".").split(".")[0]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~current_umask())
        writer(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(error, OSError) and error.errno is not None:
            raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from error
        raise
    return path


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
        affine: 4x4 voxel-to-scanner (RAS+, mm) matrix; must be finite.
        path: destination file.
        dtype: on-disk data type; defaults to the array's own.
    """
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError(f"Refusing to write {path}: its affine is not a finite 4x4 matrix.")
    data = np.asarray(array)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    image = nib.Nifti1Image(data, affine)
    image.header.set_data_dtype(data.dtype)
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "atomic_write",
    "current_umask",
    "file_sha256",
    "save_nifti_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
]
