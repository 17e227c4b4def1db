"""``sap benchmark``: SAP against SSL and scratch under the paper's protocol, resumable.

Stages, each written under ``OUT`` and recorded in a ``stage.json`` holding the hash of its
inputs (:func:`~sap.experiments.benchmark_config.stage_key`); a rerun skips every stage
whose record matches and redoes (from a clean folder) any other, so a killed benchmark
continues where it stopped and a changed setting redoes exactly what it touches:

1. cohorts (``OUT/cohorts``, phantoms by default) and the folds (``OUT/splits``);
2. pretraining once: SAP's skeleton model and the SSL encoder on the same healthy scans
   (``OUT/pretrain/skeleton``, ``OUT/pretrain/ssl``), with their compute;
3. for every seed, test fold and arm: fine-tune, predict, tune the threshold
   (``OUT/finetune/<arm>/seed_<s>/fold_<k>/lr_encoder_<rate>``;
   :mod:`~sap.experiments.benchmark_folds`); an arm with several candidate encoder rates
   is fine-tuned with each, and the one with the best F-beta on the tuning fold is tested;
4. scoring per arm and seed (``OUT/scores/<arm>/seed_<s>``) and the comparison
   (:mod:`~sap.experiments.benchmark_results`);
5. the feature analysis before fine-tuning (``OUT/features``; :mod:`~sap.experiments.features`)
   and SAP's skeleton model on the tuning fold's skeleton labels (``OUT/skeleton_check``;
   :mod:`~sap.experiments.skeleton_check`);
6. ``OUT/results.json``, CSV tables, ``OUT/report.md`` and figures
   (:mod:`~sap.experiments.benchmark_report`).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sap.experiments.benchmark_config import BenchmarkConfig, stage_key
from sap.experiments.benchmark_data import FoldFiles, cohort_cases, prepare_cohorts, split_cohort
from sap.experiments.cv_splits import CrossValidation
from sap.io import cleanup_on_signals, write_text_atomic

#: The record of a finished stage inside its folder.
STAGE_FILE = "stage.json"


class Stages:
    """Runs stages under ``out`` once: a stage whose folder holds a matching record is skipped.

    Args:
        out: the benchmark folder; stage folders must lie inside it.
        log: where progress lines go.
    """

    def __init__(self, out: Path, log: Callable[[str], None]) -> None:
        self.out = out.resolve()
        self.log = log
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def record(self, folder: Path, key: str) -> dict[str, Any] | None:
        """The record of a finished stage with this key, else ``None``."""
        try:
            record = json.loads((folder / STAGE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None

    def run(self, name: str, folder: Path, key: str, work: Callable[[], dict]) -> dict[str, Any]:
        """``work()``'s record, from an earlier run when finished with the same ``key``."""
        folder = folder.resolve()
        if self.out not in folder.parents:
            raise ValueError(f"stage folder {folder} lies outside the benchmark folder {self.out}")
        done = self.record(folder, key)
        if done is not None:
            self.log(f"{name}: finished earlier (key {key}), skipped")
            self.skipped.append(name)
            return done["result"]
        if folder.exists():
            shutil.rmtree(folder)  # an unfinished or outdated run: start it over
        self.log(f"{name}: running")
        start, cpu_start = time.perf_counter(), time.process_time()
        # Through JSON and back: a fresh result and one read from an earlier run are alike.
        result = json.loads(json.dumps(work()))
        result["wall_s"] = round(time.perf_counter() - start, 1)
        # CPU time of this process: on a shared machine a steadier measure of the work.
        result["cpu_s"] = round(time.process_time() - cpu_start, 1)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            folder / STAGE_FILE, json.dumps({"key": key, "result": result}, indent=2) + "\n"
        )
        self.log(f"{name}: done in {result['wall_s']:.0f} s (CPU {result['cpu_s']:.0f} s)")
        self.ran.append(name)
        return result


@dataclass(frozen=True)
class Job:
    """One stage to run: its name, folder, key and a picklable ``work()`` (for worker processes)."""

    name: str
    folder: Path
    key: str
    work: Callable[[], dict]


def run_jobs(stages: Stages, jobs: list[Job], workers: int, threads: int | None) -> list[dict]:
    """Results of ``jobs`` in order: finished ones read back, the others run.

    With ``workers > 1`` the unfinished jobs run in that many spawned processes, each with
    ``threads`` torch threads; every job is seeded on its own, so its result does not depend
    on which process ran it or when.
    """
    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        if stages.record(job.folder.resolve(), job.key) is None:
            todo.append(job)
        else:
            results[job.name] = stages.run(job.name, job.folder, job.key, job.work)
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            results[job.name] = stages.run(job.name, job.folder, job.key, job.work)
        return [results[job.name] for job in jobs]
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        min(workers, len(todo)), mp_context=context, initializer=_start_worker, initargs=(threads,)
    )
    try:
        with cleanup_on_signals():  # SIGTERM/SIGHUP: raise here, so the workers are stopped
            futures = {pool.submit(_run_in_worker, stages.out, job): job for job in todo}
            for future in as_completed(futures):
                job = futures[future]
                results[job.name] = future.result()
                stages.ran.append(job.name)
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown()
    return [results[job.name] for job in jobs]


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop a failed or interrupted run's workers now: start no queued job, end running ones.

    A job's folder is trusted only once its stage record is written, so ending it midway
    loses that job's work and nothing else; a rerun redoes it.
    """
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=30)


def _start_worker(threads: int | None) -> None:
    from sap.experiments.trainer import set_torch_threads

    set_torch_threads(threads)


def _run_in_worker(out: Path, job: Job) -> dict:
    stages = Stages(out, lambda line: print(f"[sap benchmark] {line}", flush=True))
    return stages.run(job.name, job.folder, job.key, job.work)


def run_benchmark(
    config: BenchmarkConfig,
    out_dir: str | Path,
    *,
    command: str = "",
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or continue) the benchmark in ``out_dir`` and write its report; returns the results.

    Args:
        config: what to run (:class:`~sap.experiments.benchmark_config.BenchmarkConfig`).
        out_dir: the benchmark folder; an earlier run's stages there are reused when their
            inputs are unchanged.
        command: the command line, recorded in the report.
        progress: show Lightning's progress bars.
        log: where progress lines go.
    """
    from sap.experiments.benchmark_report import write_outputs
    from sap.experiments.trainer import set_torch_threads

    config.check()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    threads = set_torch_threads(config.training.torch_threads)
    say = lambda line: log(f"[sap benchmark] {line}")  # noqa: E731
    stages = Stages(out, say)
    cohorts = prepare_cohorts(config.cohort, out, log=say)
    split, files = split_cohort(config, cohorts, out)
    say(f"folds (cases): {[len(f) for f in split.folds]}, tuning fold {split.tuning_fold}")
    pretrained = _pretrain(config, cohorts, stages, progress)
    runs = _finetune(config, split, files, pretrained, stages, progress, out)
    scores = _score(config, files, runs, stages, out, _skeleton_maps(cohorts.metastatic))
    features = _features(config, files, split, pretrained, stages, out)
    skeleton = _skeleton_check(config, cohorts, split, pretrained, stages, out)
    results = write_outputs(
        config,
        out,
        split=split,
        pretrained=pretrained,
        runs=runs,
        scores=scores,
        features=features,
        skeleton=skeleton,
        command=command,
        threads=threads,
        runtime_s=time.perf_counter() - started,
        stages={"ran": stages.ran, "skipped": stages.skipped},
    )
    say(f"report written to {out / 'report.md'}")
    return results


def _pretrain(config: BenchmarkConfig, cohorts, stages: Stages, progress: bool) -> dict[str, Any]:
    """Pretraining once per needed initialisation; name -> record (``key``, ``checkpoint``, compute)."""
    training = config.training
    inits = sorted(config.pretraining_needed())
    jobs = []
    for init in inits:
        folder = stages.out / "pretrain" / PRETRAINING_RUNS[init]
        key = stage_key(init, cohorts.identity["healthy"], _pretraining_settings(training, init))
        work = functools.partial(
            _pretrain_job, init, cohorts.healthy, folder.parent, training, progress
        )
        jobs.append(Job(f"pretraining {init}", folder, key, work))
    results = run_jobs(stages, jobs, config.workers, training.torch_threads)
    return {init: {"key": job.key, **r} for init, job, r in zip(inits, jobs, results)}


#: Run folder (under ``OUT/pretrain``) of each pretraining.
PRETRAINING_RUNS: dict[str, str] = {"sap": "skeleton", "ssl": "ssl"}


def _pretrain_job(init: str, healthy: Path, folder: Path, training, progress: bool) -> dict:
    from sap.experiments.pretrain_finetune import pretrain_skeleton, pretrain_ssl

    pretrain = pretrain_skeleton if init == "sap" else pretrain_ssl
    trained = pretrain(healthy, folder, training, progress=progress)
    return {"checkpoint": str(trained.checkpoint), **trained.compute()}


def _pretraining_settings(training, init: str) -> dict[str, Any]:
    """The training settings a pretraining run depends on (not the fine-tuning ones)."""
    shared = ("seed", "backbone", "backbone_kwargs", "patch_size", "batch_size", "torch_threads")
    own = {
        "sap": ("skeleton_epochs", "skeleton_samples_per_volume", "skeleton_lr",
                "skeleton_ce_background_weight", "batch_dice"),
        "ssl": ("ssl_epochs", "ssl_samples_per_volume", "ssl_lr", "ssl_task_kwargs"),
    }[init]  # fmt: skip
    return {name: getattr(training, name) for name in (*shared, *own)}


def _finetune(config, split: CrossValidation, files: FoldFiles, pretrained, stages, progress, out):
    """Every seed x test fold x arm x candidate encoder rate; ``runs[arm][seed][fold]`` = the
    record of the candidate chosen on the tuning fold, with every candidate's record under
    ``"candidates"`` (:func:`~sap.experiments.benchmark_folds.choose_on_tuning_fold`)."""
    from sap.experiments.benchmark_folds import choose_on_tuning_fold

    finetuning = {
        k: v for k, v in vars(config.training).items() if not k.startswith(("skeleton_", "ssl_"))
    }
    jobs, cells = [], []
    for seed in config.seeds:
        for fold in split.test_folds:
            for name, arm in config.arms.items():
                source = pretrained.get(arm.init)
                init = None if source is None else Path(source["checkpoint"])
                for rate in arm.candidate_rates():
                    one = arm.with_rate(rate)
                    # The key holds this candidate's rate only: adding or dropping another
                    # candidate redoes no finished run.
                    key = stage_key(
                        finetuning, one, seed, split.to_dict(), fold,
                        None if source is None else source["key"], config.evaluation,
                    )  # fmt: skip
                    folder = (
                        out / "finetune" / name / f"seed_{seed}" / f"fold_{fold}"
                        / f"lr_encoder_{rate:g}"
                    )  # fmt: skip
                    work = functools.partial(
                        _fold_job,
                        config,
                        files,
                        split.tuning_fold,
                        fold,
                        one,
                        seed,
                        init,
                        folder,
                        progress,
                    )
                    label = f"fine-tuning {name}, seed {seed}, fold {fold}"
                    if len(arm.candidate_rates()) > 1:
                        label += f", encoder rate {rate:g}"
                    jobs.append(Job(label, folder, key, work))
                    cells.append((name, str(seed), fold, rate, key))
    candidates: dict[tuple[str, str, int], list[dict]] = {}
    for (name, seed, fold, rate, key), record in zip(
        cells, run_jobs(stages, jobs, config.workers, config.training.torch_threads)
    ):
        candidates.setdefault((name, seed, fold), []).append(
            {"key": key, "lr_encoder": rate, **record}
        )
    runs: dict[str, dict[str, dict[int, dict]]] = {arm: {} for arm in config.arms}
    for (name, seed, fold), records in candidates.items():
        chosen = choose_on_tuning_fold(records)
        runs[name].setdefault(seed, {})[fold] = {**chosen, "candidates": records}
    return runs


def _fold_job(config, files, tuning_fold, fold, arm, seed, init, folder: Path, progress) -> dict:
    from sap.experiments.benchmark_folds import run_fold

    record = run_fold(config, files, tuning_fold, fold, arm, seed, init, folder, progress)
    return {"folder": str(folder), **record}


def _skeleton_maps(cohort: Path) -> dict[str, str]:
    """Case id -> skeleton label map, for the patients that have one (the phantoms do)."""
    cases = cohort_cases(cohort).values()
    return {c.case_id: str(c.skeleton) for c in cases if c.skeleton is not None}


def _score(
    config, files: FoldFiles, runs, stages: Stages, out: Path, skeletons: dict[str, str]
) -> dict[str, Any]:
    """``scores[arm][seed]``: the pooled evaluation of one arm and seed over its test folds."""
    from sap.experiments.benchmark_results import score_arm_seed

    jobs, cells = [], []
    for arm, by_seed in runs.items():
        for seed, folds in by_seed.items():
            folder = out / "scores" / arm / f"seed_{seed}"
            key = stage_key([folds[f]["key"] for f in sorted(folds)], config.evaluation, skeletons)
            work = functools.partial(score_arm_seed, config, files, folds, folder, skeletons)
            jobs.append(Job(f"scoring {arm}, seed {seed}", folder, key, work))
            cells.append((arm, seed))
    scores: dict[str, dict[str, Any]] = {}
    for (arm, seed), result in zip(
        cells, run_jobs(stages, jobs, config.workers, config.training.torch_threads)
    ):
        scores.setdefault(arm, {})[seed] = result
    return scores


def _features(config, files: FoldFiles, split, pretrained, stages: Stages, out: Path):
    """The t-SNE analysis of the initialisations, or ``None`` when switched off."""
    if not config.features.enabled:
        return None
    training = config.training
    key = stage_key(
        config.features, {k: v["key"] for k, v in pretrained.items()}, split.to_dict(),
        training.backbone, training.backbone_kwargs, training.patch_size, training.seed,
    )  # fmt: skip
    checkpoints = {init: record["checkpoint"] for init, record in pretrained.items()}
    work = functools.partial(_features_job, config, files.manifest(split.tuning_fold), checkpoints)
    return stages.run("feature analysis (t-SNE)", out / "features", key, work)


def _skeleton_check(config, cohorts, split, pretrained, stages: Stages, out: Path):
    """SAP's skeleton model on the tuning fold's skeleton labels, or ``None`` without SAP."""
    if "sap" not in pretrained:
        return None
    cases = sorted(split.tuning_cases())
    key = stage_key(
        pretrained["sap"]["key"], cohorts.identity["metastatic"], cases,
        config.training.sw_overlap, config.evaluation.predict_batch_size,
    )  # fmt: skip
    work = functools.partial(
        _skeleton_check_job,
        pretrained["sap"]["checkpoint"],
        cohorts.metastatic,
        cases,
        config.training.sw_overlap,
        config.evaluation.predict_batch_size,
    )
    return stages.run("skeleton model check", out / "skeleton_check", key, work)


def _skeleton_check_job(checkpoint, cohort: Path, case_ids, overlap: float, batch: int) -> dict:
    from sap.experiments.skeleton_check import skeleton_quality

    cases = cohort_cases(cohort)
    return skeleton_quality(
        checkpoint, [cases[c] for c in case_ids], overlap=overlap, batch_size=batch
    )


def _features_job(config: BenchmarkConfig, manifest: Path, checkpoints: dict[str, str]) -> dict:
    import torch

    from sap.backbones import build_backbone
    from sap.experiments.features import draw_patches, feature_analysis
    from sap.labels import CHANNELS, LESION_LABELS
    from sap.zoo import read_checkpoint

    training = config.training
    images, is_lesion = draw_patches(
        manifest, training.patch_size, config.features.patches_per_class, training.seed
    )
    torch.manual_seed(training.seed)
    models = {
        "scratch": build_backbone(
            training.backbone, len(CHANNELS), len(LESION_LABELS), **training.backbone_kwargs
        )
    }
    for init in ("ssl", "sap"):
        if init in checkpoints:
            models[init] = read_checkpoint(checkpoints[init]).build_backbone()
    return feature_analysis(models, images, is_lesion, config.features.perplexity, training.seed)


__all__ = ["STAGE_FILE", "Job", "Stages", "run_benchmark", "run_jobs"]
