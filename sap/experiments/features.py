"""The paper's Fig. 3: does an initialisation already tell lesion patches from lesion-free ones?

Before any fine-tuning, each initialisation (random, SSL encoder, SAP skeleton model) encodes
the same lesion and lesion-free patches; the bottleneck (:meth:`SegmentationBackbone.encode`)
is averaged over space into one vector per patch. t-SNE (scikit-learn) maps the vectors to 2D
for the figure; the cluster distances are computed in the feature space itself (each feature
scaled to unit variance over all patches) and in the 2D map:

- ``intra_lesion`` / ``intra_lesion_free``: mean distance between patches of one class;
- ``inter``: mean distance between a lesion and a lesion-free patch;
- ``ratio``: ``inter`` over the mean of the two intra distances (> 1: the classes separate);
- ``silhouette``: scikit-learn's silhouette score of the two classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def draw_patches(manifest: Path, patch_size, per_class: int, seed: int) -> tuple[Any, np.ndarray]:
    """Up to ``per_class`` lesion and lesion-free patches of the cases in ``manifest``.

    Patches come from the lesion data module's instance-balanced sampler without
    augmentation: one per lesion and as many lesion-free ones.

    Returns:
        ``(images [N, C, X, Y, Z], is_lesion [N] bool)``.
    """
    import lightning as L
    import torch

    from sap.data.datamodules import LesionDataModule

    L.seed_everything(seed, workers=True)
    data = LesionDataModule(
        str(manifest),
        patch_size=list(patch_size),
        batch_size=8,
        negative_ratio=1.0,
        val_fraction=0.0,
        augment=False,
        seed=seed,
    )
    data.setup("fit")
    images, labels = [], []
    for batch in data.train_dataloader():
        images.append(batch["image"])
        labels.append(batch["label"].flatten(1).any(dim=1))
    image = torch.cat(images)
    is_lesion = torch.cat(labels).numpy()
    keep = np.concatenate(
        [np.flatnonzero(is_lesion)[:per_class], np.flatnonzero(~is_lesion)[:per_class]]
    )
    return image[torch.as_tensor(keep)], is_lesion[keep]


def pooled_features(model: Any, images: Any, batch_size: int = 8) -> np.ndarray:
    """Spatial means of ``model.encode`` for every patch: ``[N, bottleneck_channels]``."""
    import torch

    model.eval()
    with torch.no_grad():
        parts = [
            model.encode(images[i : i + batch_size]).mean(dim=(2, 3, 4))
            for i in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(parts).numpy().astype(np.float64)


def cluster_distances(points: np.ndarray, is_lesion: np.ndarray) -> dict[str, float]:
    """Intra- and inter-class mean distances, their ratio and the silhouette score.

    >>> pts = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    >>> d = cluster_distances(pts, np.array([True, True, False, False]))
    >>> d["intra_lesion"], round(d["ratio"], 2)
    (1.0, 10.02)
    """
    from scipy.spatial.distance import cdist
    from sklearn.metrics import silhouette_score

    lesion, free = points[is_lesion], points[~is_lesion]

    def mean_within(group: np.ndarray) -> float:
        if len(group) < 2:
            return float("nan")
        d = cdist(group, group)
        return float(d[np.triu_indices(len(group), k=1)].mean())

    intra_lesion, intra_free = mean_within(lesion), mean_within(free)
    inter = float(cdist(lesion, free).mean()) if len(lesion) and len(free) else float("nan")
    silhouette = (
        float(silhouette_score(points, is_lesion.astype(int)))
        if len(lesion) >= 2 and len(free) >= 2
        else float("nan")
    )
    return {
        "intra_lesion": intra_lesion,
        "intra_lesion_free": intra_free,
        "inter": inter,
        "ratio": inter / ((intra_lesion + intra_free) / 2),
        "silhouette": silhouette,
    }


def feature_analysis(
    models: Mapping[str, Any], images: Any, is_lesion: np.ndarray, perplexity: float, seed: int
) -> dict[str, Any]:
    """t-SNE map and cluster distances of each initialisation's pooled bottleneck features.

    Args:
        models: initialisation name -> backbone (with ``encode``).
        images: patches ``[N, C, X, Y, Z]``.
        is_lesion: which patches hold a lesion.
        perplexity: t-SNE perplexity, lowered to ``(N - 1) / 3`` for few patches.
        seed: t-SNE's random state.
    """
    from sklearn.manifold import TSNE

    result: dict[str, Any] = {"labels": [bool(v) for v in is_lesion], "initialisations": {}}
    for name, model in models.items():
        features = pooled_features(model, images)
        scale = features.std(axis=0)
        scaled = features / np.where(scale > 0, scale, 1.0)
        tsne = TSNE(
            n_components=2,
            perplexity=min(float(perplexity), max(1.0, (len(scaled) - 1) / 3)),
            init="pca",
            random_state=seed,
        )
        embedding = tsne.fit_transform(scaled)
        result["initialisations"][name] = {
            "embedding": embedding.round(4).tolist(),
            "feature_space": cluster_distances(scaled, is_lesion),
            "embedding_space": cluster_distances(embedding, is_lesion),
        }
    return result


__all__ = ["cluster_distances", "draw_patches", "feature_analysis", "pooled_features"]
