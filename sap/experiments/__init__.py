"""Experiments built from the library: the SAP pretrain-then-fine-tune study and the demo.

- :func:`pretrain_then_finetune` — skeleton pretraining, then lesion fine-tuning from it (SAP)
  and from scratch, with identical budgets (:mod:`~sap.experiments.pretrain_finetune`;
  :func:`pretrain_ssl` trains the SSL baseline).
- :func:`run_benchmark` — ``sap benchmark``: SAP vs SSL vs scratch under the paper's protocol
  (:mod:`~sap.experiments.benchmark` and its ``benchmark_*`` modules,
  :mod:`~sap.experiments.cv_splits`, :mod:`~sap.experiments.features`; ``docs/benchmark.md``).
- :func:`run_demo` — ``sap demo``: that study in miniature on phantoms, evaluated on held-out
  cases and printed as a table (:mod:`~sap.experiments.demo`,
  :mod:`~sap.experiments.demo_table`).
- :func:`cpu_trainer` — the Trainer every experiment run uses (:mod:`~sap.experiments.trainer`).

Lightning, the data modules and the tasks are imported inside the functions that use them,
so ``sap --help`` stays fast.
"""

from __future__ import annotations

from sap.experiments.benchmark import run_benchmark
from sap.experiments.benchmark_config import BenchmarkConfig
from sap.experiments.cv_splits import CrossValidation, stratified_folds
from sap.experiments.demo import DemoSettings, evaluate_lesion_model, quick_settings, run_demo
from sap.experiments.demo_table import format_table
from sap.experiments.pretrain_finetune import (
    PretrainFinetuneRuns,
    PretrainFinetuneSettings,
    TrainedRun,
    finetune_lesion,
    pretrain_skeleton,
    pretrain_ssl,
    pretrain_then_finetune,
)
from sap.experiments.trainer import cpu_trainer, set_torch_threads, write_run_config

__all__ = [
    "BenchmarkConfig",
    "CrossValidation",
    "DemoSettings",
    "PretrainFinetuneRuns",
    "PretrainFinetuneSettings",
    "TrainedRun",
    "cpu_trainer",
    "evaluate_lesion_model",
    "finetune_lesion",
    "format_table",
    "pretrain_skeleton",
    "pretrain_ssl",
    "pretrain_then_finetune",
    "quick_settings",
    "run_benchmark",
    "run_demo",
    "set_torch_threads",
    "stratified_folds",
    "write_run_config",
]
