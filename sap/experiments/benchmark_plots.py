"""The benchmark's figures, drawn from ``results.json`` alone (so a report renders anywhere).

- ``froc.png``: FROC envelopes of every arm, one line per seed;
- ``volume.png``: sensitivity per lesion-volume bin and false positives per exam per
  component-volume bin, every arm side by side (seeds pooled);
- ``seeds.png``: the seed-to-seed spread of F2 and FROC-AUC per arm;
- ``tsne.png``: the t-SNE maps of the initialisations (lesion vs lesion-free patches).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sap.io import atomic_write
from sap.metrics.plots import DEFAULT_VOLUME_BINS_ML

#: One colour per arm, in the order arms are listed.
COLOURS: tuple[str, ...] = ("tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:red")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    _pyplot().close(fig)
    return path


def _colours(arms) -> dict[str, str]:
    return {arm: COLOURS[i % len(COLOURS)] for i, arm in enumerate(arms)}


def plot_froc_arms(results: Mapping[str, Any], path: Path) -> Path:
    """FROC envelopes (to the paper's 15 FP/exam) of every arm and seed on one plot."""
    from sap.metrics.froc import FROCCurve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colours = _colours(results["arms"])
    limit = float(results.get("froc_limit", 15.0))
    for arm in results["arms"]:
        for index, (seed, curve) in enumerate(sorted(results["curves"][arm].items())):
            froc = FROCCurve(
                thresholds=np.asarray([np.inf if t is None else t for t in curve["thresholds"]]),
                sensitivity=np.asarray(curve["sensitivity"], dtype=np.float64),
                fp_per_exam=np.asarray(curve["fp_per_exam"], dtype=np.float64),
                n_exams=int(curve["n_exams"]),
                n_lesions=int(curve["n_lesions"]),
            )
            x, s = froc.envelope(limit)
            label = f"{arm} (AUC {froc.auc(limit):.2f}, seed {seed})" if index == 0 else None
            ax.step(np.append(x, limit), np.append(s, s[-1]), where="post", color=colours[arm],
                    alpha=0.85 if index == 0 else 0.45, label=label)  # fmt: skip
    ax.set_xlim(0, limit)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per exam")
    ax.set_ylabel("lesion sensitivity")
    ax.set_title("FROC of the test patients (one line per seed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_volume_arms(results: Mapping[str, Any], path: Path) -> Path:
    """Sensitivity vs lesion volume and false positives vs component volume, per arm."""
    plt = _pyplot()
    edges = np.asarray(DEFAULT_VOLUME_BINS_ML, dtype=np.float64)
    n_bins = edges.size - 1
    labels = [
        f"{a:g}–{b:g}" if np.isfinite(b) else f"≥{a:g}" for a, b in zip(edges[:-1], edges[1:])
    ]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    arms = list(results["arms"])
    colours = _colours(arms)
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        rows = [row for rows in results["lesions"][arm].values() for row in rows]
        volumes = np.asarray([row["volume_ml"] for row in rows], dtype=np.float64)
        detected = np.asarray([bool(row["detected"]) for row in rows])
        which = np.clip(np.searchsorted(edges, volumes, side="right") - 1, 0, n_bins - 1)
        counts = np.bincount(which, minlength=n_bins)
        hits = np.bincount(which, weights=detected, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            sensitivity = np.where(counts > 0, hits / counts, np.nan)
        fp = np.asarray([v for vs in results["fp_volumes_ml"][arm].values() for v in vs])
        which_fp = np.clip(np.searchsorted(edges, fp, side="right") - 1, 0, n_bins - 1)
        exams = sum(results["n_exams"][arm].values())
        fp_per_exam = np.bincount(which_fp, minlength=n_bins) / max(exams, 1)
        positions = np.arange(n_bins) + (i - (len(arms) - 1) / 2) * width
        ax1.bar(positions, np.nan_to_num(sensitivity), width, color=colours[arm], label=arm)
        ax2.bar(positions, fp_per_exam, width, color=colours[arm], label=arm)
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("sensitivity")
    ax1.set_title("sensitivity vs reference lesion volume")
    ax2.set_ylabel("false positives per exam")
    ax2.set_title("false positives vs predicted component volume")
    for ax in (ax1, ax2):
        ax.set_xticks(np.arange(n_bins), labels, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("volume (mL)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_seed_spread(results: Mapping[str, Any], path: Path) -> Path:
    """Per-seed F2 (median over patients) and FROC-AUC of every arm."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    arms = list(results["arms"])
    colours = _colours(arms)
    for ax, key, title in ((axes[0], "f_beta", "F2 (median over patients)"),
                           (axes[1], "froc_auc", "FROC-AUC (to 15 FP/exam)")):  # fmt: skip
        for i, arm in enumerate(arms):
            values = [v.get(key) for v in results["per_seed"][arm].values()]
            values = [np.nan if v is None else v for v in values]
            ax.scatter(np.full(len(values), i), values, color=colours[arm], zorder=3)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("seed-to-seed spread (one dot per seed)")
    fig.tight_layout()
    return _save(fig, path)


def plot_tsne(features: Mapping[str, Any], path: Path) -> Path:
    """t-SNE maps of each initialisation's pooled bottleneck features."""
    plt = _pyplot()
    inits = list(features["initialisations"])
    fig, axes = plt.subplots(1, len(inits), figsize=(4 * len(inits), 4), squeeze=False)
    lesion = np.asarray(features["labels"], dtype=bool)
    for ax, name in zip(axes[0], inits):
        entry = features["initialisations"][name]
        points = np.asarray(entry["embedding"], dtype=np.float64).reshape(-1, 2)
        ax.scatter(*points[~lesion].T, s=10, c="tab:gray", label="lesion-free")
        ax.scatter(*points[lesion].T, s=10, c="tab:red", label="lesion")
        ratio = entry["feature_space"].get("ratio")
        ax.set_title(f"{name}: inter/intra {ratio:.2f}" if ratio is not None else name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=8)
    fig.suptitle("pooled bottleneck features before fine-tuning (t-SNE)")
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["plot_froc_arms", "plot_seed_spread", "plot_tsne", "plot_volume_arms"]
