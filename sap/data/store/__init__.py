"""The patch store: every case preprocessed once, on disk, read a patch at a time.

Training from whole volumes re-reads gzip NIfTI, reorients, resamples DWI and recomputes
percentiles of every case every epoch to cut a handful of patches. The store does that
work once per case (:func:`sap.data.preprocess.preprocessing`, the very transform of the
on-the-fly path) and keeps, per case, an entry folder with the channels (float32),
the label map (uint8), the per-class voxel lists and lesion component table a patch
sampler needs, and a manifest (:mod:`~sap.data.store.entry`). Training plans each epoch
from the tables and reads each patch's window from memory-mapped arrays
(:mod:`~sap.data.store.planning`, :mod:`~sap.data.store.datasets`): no whole volume is
read or decompressed per epoch.

* **Keys** (:mod:`~sap.data.store.keys`): an entry is keyed by its source files' identity
  (path, size, mtime in ns) and the recipe; a change of either rebuilds that case only.
* **Where**: ``--data.cache_dir``, else ``$SAP_CACHE_DIR``, else ``.sap-cache/<name>``
  beside the data set ``<name>`` (its own folder is never written to). Clearing it:
  delete the folder, or :func:`clear_store` (removes only what the store wrote).
* **Safety** (:mod:`~sap.data.store.build`): entries are built in worker processes, each
  into a temporary folder renamed into place when complete; an entry is trusted only after
  its files match the manifest's sizes, shapes, dtypes and CRC-32, and rebuilt with a
  :class:`PatchStoreWarning` otherwise.

Storage format: uncompressed ``.npy`` files opened as memory maps. Measured on one
whole-body-like phantom case (2 x 256 x 192 x 800, random 96^3 patches, warm page cache,
one thread; ``benchmarks/store_format.py``, ``benchmarks/results/store_format.txt``):
``.npy`` wrote in 0.3 s, used 338 MiB and read a patch (2 channels + label) in 3.4 ms;
blosc2 (zstd or lz4 with shuffle, chunks and blocks from the patch size as nnU-Net v2
chooses them) wrote in 2.6-6.2 s, used 241-266 MiB (21-29 % less) and read a patch in
15-28 ms (4.5-8x slower). Normalised MRI intensities are noise in their low bits and
compress poorly, while decompression spends the CPU time that data-loader workers need:
memory maps feed several times more patches per core for about a third more disk.
"""

from __future__ import annotations

from sap.data.store.build import PatchStoreWarning, build_entry, clear_store, open_store
from sap.data.store.datasets import (
    PlannedPatches,
    StoreCases,
    StorePatches,
    StorePatchQueue,
    StoreVolumes,
)
from sap.data.store.entry import StoreEntry, StoreEntryError, verify_entry
from sap.data.store.keys import (
    CACHE_DIR_ENV,
    DEFAULT_CACHE_NAME,
    StoreRecipe,
    entry_key,
    resolve_cache_dir,
)
from sap.data.store.planning import (
    ClassBalancedPlanner,
    InstanceBalancedPlanner,
    PatchSpec,
    planner_for,
)
from sap.data.store.views import CaseView

__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_CACHE_NAME",
    "CaseView",
    "ClassBalancedPlanner",
    "InstanceBalancedPlanner",
    "PatchSpec",
    "PatchStoreWarning",
    "PlannedPatches",
    "StoreCases",
    "StoreEntry",
    "StoreEntryError",
    "StorePatchQueue",
    "StorePatches",
    "StoreRecipe",
    "StoreVolumes",
    "build_entry",
    "clear_store",
    "entry_key",
    "open_store",
    "planner_for",
    "resolve_cache_dir",
    "verify_entry",
]
