"""Open a 3D image file once, with the checks every reader of `sap` needs.

:func:`open_volume` reads the header only and refuses what no stage can use (missing file, a
folder, an unreadable header, more than one 3D volume, a degenerate or non-finite affine);
:meth:`VolumeFile.voxels` reads the data on demand and turns a truncated or corrupt file
into the same :class:`VolumeReadError`, which always names the file, the problem and a fix.
A gzip-compressed file is checked end to end (its CRC), because a reader that stops after the
last voxel never sees the checksum and returns silently damaged voxels.
NIfTI/Analyze/MGH go through nibabel, everything else (NRRD, MHA, ...) through SimpleITK.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: File endings nibabel reads; other endings go through SimpleITK.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".hdr", ".img", ".mgz", ".mgh")


class VolumeReadError(ValueError):
    """An image file that cannot be used; ``path``, ``problem`` and ``hint`` say why.

    ``str(error)`` is one sentence naming the file, for callers that pass it on as it is.
    """

    def __init__(self, path: Path, problem: str, hint: str) -> None:
        self.path = Path(path)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{self.path}: {problem}; {hint}.")


class VolumeFile:
    """One image file: header (shape, affine, on-disk ``dtype`` where the header tells it, else
    None) now, voxels on demand (``read(dtype)``, once per call, checked to the file's end)."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        affine: np.ndarray,
        read,
        dtype: np.dtype | None = None,
    ) -> None:
        self.path = path
        self.shape = shape
        self.affine = affine
        self.dtype = dtype
        self._read = read

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape with trailing singleton dimensions dropped (but never below 3D)."""
        shape = list(self.shape)
        while len(shape) > 3 and shape[-1] == 1:
            shape.pop()
        return tuple(shape)

    @property
    def spacing_mm(self) -> np.ndarray:
        from sap.volume.geometry import spacing_from_affine

        return spacing_from_affine(self.affine)

    def voxels(self, dtype: np.dtype | type | None = None) -> np.ndarray:
        """The 3D voxel array (trailing singleton axes dropped), optionally cast to ``dtype``."""
        try:
            data = self._read(dtype)
        except VolumeReadError:
            raise
        except Exception as error:  # truncated gzip, short file, bad compression, ...
            raise VolumeReadError(
                self.path,
                f"the voxel data cannot be read ({type(error).__name__}: {error})",
                "the file is probably truncated or corrupt; re-export or re-copy it",
            ) from error
        return data.reshape(self.spatial_shape)


def _damaged_gzip(path: Path, error: Exception) -> VolumeReadError:
    return VolumeReadError(
        path,
        f"the gzip stream is damaged ({type(error).__name__}: {error})",
        "the file was corrupted in storage or transfer; re-copy or re-export it",
    )


def _check_gzip(path: Path, chunk_bytes: int = 1 << 24) -> None:
    """Decompress ``path`` to its end so that gzip checks its CRC and length."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(chunk_bytes):
                pass
    except (OSError, EOFError, zlib.error) as error:
        raise _damaged_gzip(path, error) from error


def _read_gzip_voxels(
    path: Path, proxy, dtype: np.dtype | type | None, chunk_bytes: int = 1 << 24
) -> np.ndarray:
    """An unscaled gzip NIfTI's voxels, decompressed once, chunk by chunk, CRC checked.

    nibabel reads a ``.nii.gz`` through ``GzipFile.readinto``, which decompresses into a
    temporary as large as the image and copies it over (two copies of a whole-body channel
    at once), and a CRC check would then decompress the file a second time. Here the voxels
    go straight into their array, and reading on to the end of the stream checks the CRC.
    """
    import gzip
    import zlib

    on_disk = np.dtype(proxy.dtype)
    count = int(np.prod(proxy.shape))
    raw = np.empty(count * on_disk.itemsize, np.uint8)
    view = memoryview(raw)
    try:
        with gzip.open(path, "rb") as handle:
            handle.seek(int(proxy.offset))
            filled = 0
            while filled < raw.size:
                read = handle.readinto(view[filled : filled + chunk_bytes])
                if not read:
                    raise EOFError(
                        f"the stream ends after {filled} of {raw.size} bytes of voxel data"
                    )
                filled += read
            while handle.read(chunk_bytes):
                pass
    except EOFError as error:
        raise VolumeReadError(
            path,
            f"the voxel data cannot be read (EOFError: {error})",
            "the file is probably truncated or corrupt; re-export or re-copy it",
        ) from error
    except (OSError, zlib.error) as error:
        raise _damaged_gzip(path, error) from error
    data = raw.view(on_disk).reshape(proxy.shape, order=proxy.order)
    if not on_disk.isnative:
        data = data.byteswap(inplace=True).view(on_disk.newbyteorder("="))
    return data if dtype is None else data.astype(dtype, copy=False)


def _open_nibabel(path: Path) -> VolumeFile:
    import nibabel as nib

    image = nib.load(str(path))
    shape = tuple(int(n) for n in image.shape)
    affine = np.asarray(image.affine, dtype=np.float64)
    proxy = image.dataobj

    def read(dtype: np.dtype | type | None) -> np.ndarray:
        compressed = path.name.lower().endswith(".gz")
        unscaled = getattr(proxy, "slope", 1.0) == 1.0 and getattr(proxy, "inter", 0.0) == 0.0
        if compressed and unscaled and hasattr(proxy, "offset"):
            return _read_gzip_voxels(path, proxy, dtype)
        # Asking nibabel for the dtype lets it scale straight into it, without a
        # whole-volume float64 copy (1 GB for a whole-body scan).
        data = np.asanyarray(proxy) if dtype is None else np.asarray(proxy, dtype=dtype)
        if compressed:  # a reader that stops after the last voxel never sees the CRC
            _check_gzip(path)
        return data

    return VolumeFile(path, shape, affine, read, np.dtype(image.get_data_dtype()))


def _open_simpleitk(path: Path) -> VolumeFile:
    import SimpleITK as sitk
    from torchio.data.io import get_ras_affine_from_sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = tuple(int(n) for n in reader.GetSize())
    components = int(reader.GetNumberOfComponents())
    shape = size + ((components,) if components > 1 else ())

    def read(dtype: np.dtype | type | None) -> np.ndarray:
        array = sitk.GetArrayFromImage(reader.Execute())
        spatial = len(size)
        # SimpleITK orders axes (z, y, x[, component]); nibabel and TorchIO use (x, y, z).
        array = np.moveaxis(array, list(range(spatial)), list(reversed(range(spatial))))
        return array if dtype is None else np.asarray(array, dtype=dtype)

    return VolumeFile(path, shape, np.asarray(get_ras_affine_from_sitk(reader), np.float64), read)


def open_volume(path: str | Path, what: str = "image") -> VolumeFile:
    """Open one 3D image file (header only) and check it can be used.

    Args:
        path: the file.
        what: what the file is for, used in messages ("channel 'T1'", "lesion label map").

    Raises:
        VolumeReadError: the file is missing, a folder, unreadable, not one 3D volume, or
            its affine is degenerate (zero spacing) or not finite.
    """
    path = Path(path)
    if not path.exists() or path == Path():
        raise VolumeReadError(
            path, f"{what} file is missing", "copy the file there or fix its path"
        )
    if path.is_dir():
        raise VolumeReadError(
            path,
            f"{what} is a folder, not an image file (a DICOM series?)",
            "convert it to NIfTI first, e.g. with dcm2niix",
        )
    opener = _open_nibabel if path.name.lower().endswith(IMAGE_SUFFIXES) else _open_simpleitk
    try:
        volume = opener(path)
    except Exception as error:  # the readers raise many types for broken files
        raise VolumeReadError(
            path,
            f"{what} is unreadable: cannot read the image header ({type(error).__name__}: {error})",
            "the file is damaged or not an image; re-export or re-copy it",
        ) from error
    shape = volume.spatial_shape
    if len(shape) > 3:
        raise VolumeReadError(
            path,
            f"{what} is {len(shape)}D with shape {volume.shape}, expected one 3D volume",
            "extract the single volume you need (e.g. the b=1000 image of a DWI series)",
        )
    if len(shape) < 3:
        raise VolumeReadError(
            path,
            f"{what} is {len(shape)}D with shape {volume.shape}, expected a 3D volume",
            "supply the whole 3D volume, not a slice",
        )
    if not np.all(np.isfinite(volume.affine)):
        raise VolumeReadError(
            path,
            f"{what} has NaN or infinite values in its affine (voxel-to-scanner matrix)",
            "fix the header's sform/qform, e.g. re-export the image from the scanner data",
        )
    if abs(np.linalg.det(volume.affine[:3, :3])) < 1e-12:
        raise VolumeReadError(
            path,
            f"{what} has a degenerate affine (zero voxel spacing):\n{volume.affine}",
            "fix the header's pixdim/sform",
        )
    return volume


def read_volume(
    path: str | Path, what: str = "image", dtype: np.dtype | type | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(voxels, affine)`` of a checked 3D image file; see :func:`open_volume`."""
    volume = open_volume(path, what)
    return volume.voxels(dtype), volume.affine


__all__ = ["IMAGE_SUFFIXES", "VolumeFile", "VolumeReadError", "open_volume", "read_volume"]
