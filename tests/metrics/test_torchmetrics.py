"""torchmetrics classes: same numbers as the array API, batches, merging, DDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from sap.metrics import (
    BootstrapSettings,
    LesionDetection,
    LesionFROC,
    SkeletonDice,
    class_dice,
    evaluate_exams,
    exam_froc,
    froc_curve,
    spacing_from_affine,
)

SPACING = (1.0, 1.5, 2.0)


def cohort(n=4, seed=0, shape=(16, 16, 12)):
    rng = np.random.default_rng(seed)
    refs, probs = [], []
    for _ in range(n):
        ref = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.56
        prob = ndimage.gaussian_filter(rng.random(shape) + 0.6 * ref, 1.0)
        prob = (prob - prob.min()) / (prob.max() - prob.min())
        refs.append(ref)
        probs.append(prob.astype(np.float32))
    return refs, probs


def test_lesion_detection_matches_evaluate_exams():
    refs, probs = cohort()
    metric = LesionDetection(threshold=0.6, spacing_mm=SPACING, min_volume_ml=0.02)
    metric.update(torch.from_numpy(np.stack(probs[:2])), torch.from_numpy(np.stack(refs[:2])))
    for prob, ref in zip(probs[2:], refs[2:]):  # (B, 1, D, H, W) with an explicit spacing
        metric.update(
            torch.from_numpy(prob)[None, None], torch.from_numpy(ref)[None, None], SPACING
        )
    values = metric.compute()
    from sap.metrics import DetectionSettings

    summary = evaluate_exams(
        None,
        refs,
        SPACING,
        prob_maps=probs,
        threshold=0.6,
        settings=DetectionSettings(min_volume_ml=0.02),
        bootstrap=None,
    )
    assert values["n_exams"] == 4 and values["n_lesions"] == summary["n_lesions"] > 4
    for name, stats in summary["metrics"].items():
        for key, expected in ((name, stats["pooled"]), (f"{name}_median", stats["median"])):
            got = float(values[key])
            assert (math.isnan(got) and expected is None) or got == pytest.approx(expected), key
    assert float(values["icc_total_volume"]) == pytest.approx(summary["icc_2_1_total_volume"])


def test_lesion_detection_merges_states_like_one_process():
    refs, probs = cohort(seed=1)
    whole = LesionDetection(threshold=0.6, spacing_mm=SPACING)
    first, second = (
        LesionDetection(threshold=0.6, spacing_mm=SPACING),
        LesionDetection(threshold=0.6, spacing_mm=SPACING),
    )
    for i, (prob, ref) in enumerate(zip(probs, refs)):
        whole.update(torch.from_numpy(prob), torch.from_numpy(ref))
        (first if i % 2 else second).update(torch.from_numpy(prob), torch.from_numpy(ref))
    first.merge_state(second)
    merged, expected = first.compute(), whole.compute()
    for key, value in expected.items():
        assert torch.allclose(merged[key], value, equal_nan=True), key


def test_lesion_detection_explains_bad_inputs():
    metric = LesionDetection()
    with pytest.raises(ValueError, match="spacing_mm is needed"):
        metric.update(torch.zeros(4, 4, 4), torch.zeros(4, 4, 4))
    with pytest.raises(ValueError, match="lesion channel"):
        metric.update(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 2, 4, 4, 4), (1, 1, 1))
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()


def test_spacing_from_affine_reads_column_norms():
    affine = torch.tensor([[0.0, 0, 2.5, 10], [-1.2, 0, 0, 5], [0, 1.2, 0, 1], [0, 0, 0, 1]])
    np.testing.assert_allclose(spacing_from_affine(affine), [1.2, 1.2, 2.5])
    np.testing.assert_allclose(
        spacing_from_affine(affine[None].repeat(2, 1, 1)), [[1.2, 1.2, 2.5]] * 2
    )


def test_lesion_froc_matches_the_array_api():
    refs, probs = cohort(seed=2)
    metric = LesionFROC(spacing_mm=SPACING, min_volume_ml=0.02, min_prob=0.05)
    metric.update(torch.from_numpy(np.stack(probs)), torch.from_numpy(np.stack(refs)))
    exams = [
        exam_froc(p, r, SPACING, min_volume_ml=0.02, min_prob=0.05) for p, r in zip(probs, refs)
    ]
    values = metric.compute()
    assert float(values["froc_auc"]) == pytest.approx(froc_curve(exams).auc(15))
    assert float(values["froc_auc_large"]) == pytest.approx(froc_curve(exams, large=True).auc(4))
    assert 0 < float(values["froc_auc_normalised"]) <= 1


def test_skeleton_dice_metric_pools_confusion_matrices():
    rng = np.random.default_rng(3)
    names = ("background", "a", "b", "c")
    refs = [rng.integers(0, 4, size=(6, 6, 6)) for _ in range(2)]
    preds = [np.where(rng.random(r.shape) < 0.8, r, rng.integers(0, 4, size=r.shape)) for r in refs]
    metric = SkeletonDice(names)
    metric.update(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(refs)))
    values = metric.compute()
    pooled = class_dice(np.concatenate(preds), np.concatenate(refs), names)
    for name in ("a", "b", "c"):
        assert float(values[f"dice_{name}"]) == pytest.approx(pooled[name])
    assert float(values["skeleton_dice"]) == pytest.approx(pooled["foreground"])
    assert float(values["mean_region_dice"]) == pytest.approx(pooled["mean_class_dice"])


def _ddp_worker(rank, world_size, port, refs, probs, results):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        metric = LesionDetection(threshold=0.6, spacing_mm=SPACING)
        froc = LesionFROC(spacing_mm=SPACING)
        for i in range(rank, len(refs), world_size):
            if rank == 1 and i == 1:
                continue  # rank 1 sees fewer exams than rank 0
            metric.update(torch.from_numpy(probs[i]), torch.from_numpy(refs[i]))
            froc.update(torch.from_numpy(probs[i]), torch.from_numpy(refs[i]))
        values = metric.compute() | froc.compute()
        results[rank] = {k: float(v) for k, v in values.items()}
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_lesion_metrics_sync_across_processes():
    import socket

    import torch.multiprocessing as mp

    refs, probs = cohort(n=5, seed=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_worker, args=(2, port, refs, probs, results), nprocs=2, join=True)
    used = [0, 2, 3, 4]  # exam 1 was skipped by rank 1
    single = LesionDetection(threshold=0.6, spacing_mm=SPACING)
    froc = LesionFROC(spacing_mm=SPACING)
    for i in used:
        single.update(torch.from_numpy(probs[i]), torch.from_numpy(refs[i]))
        froc.update(torch.from_numpy(probs[i]), torch.from_numpy(refs[i]))
    expected = {k: float(v) for k, v in (single.compute() | froc.compute()).items()}
    for rank in (0, 1):
        for key, value in expected.items():
            got = results[rank][key]
            assert (math.isnan(value) and math.isnan(got)) or got == pytest.approx(value), key


def test_bootstrap_settings_change_only_the_intervals():
    refs, probs = cohort(seed=5)
    a = evaluate_exams(
        None, refs, SPACING, prob_maps=probs, bootstrap=BootstrapSettings(n_resamples=200, seed=1)
    )
    b = evaluate_exams(
        None, refs, SPACING, prob_maps=probs, bootstrap=BootstrapSettings(n_resamples=200, seed=2)
    )
    dice_a, dice_b = a["metrics"]["dice_detected"], b["metrics"]["dice_detected"]
    assert dice_a["median"] == dice_b["median"]
    assert (dice_a["ci_low"], dice_a["ci_high"]) != (dice_b["ci_low"], dice_b["ci_high"])
    assert a["settings"]["bootstrap"]["seed"] == 1
    assert a["froc"]["auc"] == b["froc"]["auc"]
