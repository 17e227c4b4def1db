"""Patch-store format: uncompressed ``.npy`` memory maps vs blosc2 chunked compression.

Question: which on-disk format should :mod:`sap.data.store` use for a preprocessed case:
``.npy`` files opened as memory maps (a patch copies only its window) or blosc2 NDArrays
with chunk and block sizes chosen from the patch size (what nnU-Net v2 stores; a patch
decompresses only the blocks it touches)? Measured on one preprocessed phantom case:
write time, disk use, and the time to read random patches (all channels + label) in one
thread, after a warm-up read of the same windows (page cache warm, as in training epochs
after the first).

blosc2 is not a dependency of sap. To include it, install it into a side folder:
``pip install --target /tmp/b2 blosc2`` and run with ``PYTHONPATH=/tmp/b2`` (keep only the
``blosc2``, ``ndindex``, ``msgpack`` and ``numexpr`` folders there so sap's numpy is used).

    python benchmarks/store_format.py                            # 2 x 256 x 192 x 800, patch 96
    python benchmarks/store_format.py --shape 96 64 224 --patch 48   # quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def preprocessed_case(work: Path, shape: tuple[int, int, int], seed: int):
    """One phantom case, preprocessed as the store does: channels float32, lesion uint8."""
    from sap.data.cases import case_to_subject, discover_cases
    from sap.data.preprocess import preprocessing
    from sap.phantom import generate_cohort

    spacing = tuple(f / n for f, n in zip((480.0, 300.0, 1800.0), shape))
    generate_cohort(
        work / "cohort", healthy=0, metastatic=1, seed=seed, shape=shape, spacing_mm=spacing
    )
    (case,) = discover_cases(work / "cohort", require=("lesion",))
    subject = case_to_subject(case)
    subject.remove_image("skeleton")
    subject = preprocessing()(subject)
    image = np.stack([subject[c].data[0].numpy() for c in ("T1", "b1000")]).astype(np.float32)
    return image, subject["lesion"].data[0].numpy().astype(np.uint8)


def time_reads(read, offsets) -> float:
    for offset in offsets:  # warm-up: page cache and decoder state
        read(offset)
    start = time.perf_counter()
    for offset in offsets:
        read(offset)
    return (time.perf_counter() - start) / len(offsets) * 1e3


def measure_npy(folder: Path, image, label, offsets, patch) -> dict:
    folder.mkdir()
    start = time.perf_counter()
    np.save(folder / "image.npy", image)
    np.save(folder / "label.npy", label)
    write_s = time.perf_counter() - start
    images = np.load(folder / "image.npy", mmap_mode="r")
    labels = np.load(folder / "label.npy", mmap_mode="r")

    def read(offset):
        box = tuple(slice(o, o + patch) for o in offset)
        return np.array(images[(slice(None), *box)]), np.array(labels[box])

    return {"format": "npy memmap", "write_s": write_s, "disk_mib": folder_bytes(folder) / 2**20,
            "read_ms_per_patch": time_reads(read, offsets)}  # fmt: skip


def measure_blosc2(folder: Path, image, label, offsets, patch, codec, clevel, chunk, block) -> dict:
    import blosc2

    folder.mkdir()
    cparams = {"codec": getattr(blosc2.Codec, codec), "clevel": clevel,
               "filters": [blosc2.Filter.SHUFFLE], "nthreads": 1}  # fmt: skip
    start = time.perf_counter()
    for name, array, lead in (("image", image, (1,)), ("label", label, ())):
        blosc2.asarray(
            np.ascontiguousarray(array), urlpath=str(folder / f"{name}.b2nd"), mode="w",
            chunks=lead + (chunk,) * 3, blocks=lead + (block,) * 3, cparams=cparams,
        )  # fmt: skip
    write_s = time.perf_counter() - start
    dparams = {"nthreads": 1}
    images = blosc2.open(str(folder / "image.b2nd"), dparams=dparams)
    labels = blosc2.open(str(folder / "label.b2nd"), dparams=dparams)

    def read(offset):
        box = tuple(slice(o, o + patch) for o in offset)
        return images[(slice(None), *box)], labels[box]

    first = read(offsets[0])[0]
    if not np.array_equal(first, image[(slice(None), *(slice(o, o + patch) for o in offsets[0]))]):
        raise RuntimeError("blosc2 read back other values")
    return {"format": f"blosc2 {codec} clevel {clevel} chunks {chunk}^3 blocks {block}^3",
            "write_s": write_s, "disk_mib": folder_bytes(folder) / 2**20,
            "read_ms_per_patch": time_reads(read, offsets)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 192, 800))
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--patches", type=int, default=200, help="random patches read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="sap-store-format-"))
    try:
        image, label = preprocessed_case(work, tuple(args.shape), args.seed)
        rng = np.random.default_rng(args.seed)
        offsets = [tuple(int(rng.integers(0, n - args.patch + 1)) for n in label.shape)
                   for _ in range(args.patches)]  # fmt: skip
        rows = [measure_npy(work / "npy", image, label, offsets, args.patch)]
        try:
            import blosc2  # noqa: F401
        except ImportError:
            print("blosc2 not importable: only .npy measured (see the module docstring)")
        else:
            half = max(8, args.patch // 3)
            for index, (codec, clevel, chunk, block) in enumerate((
                ("ZSTD", 3, args.patch, half),
                ("LZ4", 5, args.patch, half),
                ("ZSTD", 3, 2 * args.patch // 3, max(8, args.patch // 6)),
            )):  # fmt: skip
                rows.append(measure_blosc2(work / f"b{index}", image, label, offsets, args.patch,
                                           codec, clevel, chunk, block))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"one case: channels {tuple(image.shape)} float32 + label uint8, {args.patches} random "
          f"{args.patch}^3 patches, 1 thread, warm page cache")  # fmt: skip
    base = rows[0]
    for row in rows:
        print(f"{row['format']:<45} write {row['write_s']:6.2f} s  disk {row['disk_mib']:7.1f} MiB"
              f"  read {row['read_ms_per_patch']:6.2f} ms/patch  "
              f"(x{row['read_ms_per_patch'] / base['read_ms_per_patch']:.2f} of npy)")  # fmt: skip
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
