"""Run ``sap fit|validate|test`` the way users do, on tiny phantom cohorts, and read what it left.

A whole-body phantom on a coarse grid (same field of view as the default, ~1/50 of the
voxels) trains an epoch of ``tiny_unet`` in about a second; most of a ``sap fit`` run is
start-up. Runs go through :func:`sap.cli.main` (in-process) or a subprocess (to send signals).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from sap.phantom import generate_cohort

#: The repository root: subprocesses import ``tests.helpers`` from it.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Coarse whole-body phantom grid used by the CLI tests.
TINY_PHANTOM = {"shape": (32, 20, 64), "spacing_mm": (15.0, 15.0, 18.0)}
#: Patch that fits the tiny phantom and tiny_unet.
PATCH = (16, 16, 32)


def tiny_cohorts(root: Path) -> Path:
    """``root/anatomy`` (3 healthy cases) and ``root/lesions`` (3 metastatic cases)."""
    generate_cohort(root / "anatomy", healthy=3, metastatic=0, seed=3, **TINY_PHANTOM)
    generate_cohort(
        root / "lesions", healthy=0, metastatic=3, seed=4, min_lesion_voxels=2, **TINY_PHANTOM
    )
    return root


def csv_logger(folder: Path) -> str:
    """A ``--trainer.logger`` value that writes ``metrics.csv`` under ``folder``."""
    return json.dumps(
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(folder)},
        }
    )


def cli_args(command: str, config: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    """``sap <command>`` of a packaged config on a tiny cohort, CSV-logged under ``out``."""
    return [
        command,
        "--config",
        config,
        "--data.data_dir",
        str(data_dir),
        "--model.patch_size",
        f"[{','.join(map(str, PATCH))}]",
        "--data.val_fraction",
        "0.34",
        "--trainer.default_root_dir",
        str(out),
        "--trainer.logger",
        csv_logger(out),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]


def fit_args(config: str, data_dir: Path, out: Path, epochs: int = 2, *extra: str) -> list[str]:
    """``sap fit`` for ``epochs`` epochs, validating every epoch."""
    return cli_args(
        "fit",
        config,
        data_dir,
        out,
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.check_val_every_n_epoch",
        "1",
        *extra,
    )


class SlowBatches(Callback):
    """Prints ``batch <epoch>/<index>`` after each training batch and waits ``seconds``.

    Add it with ``--trainer.callbacks+=tests.helpers.training.SlowBatches`` to make a tiny
    run long enough to be signalled at a known batch.
    """

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        print(f"batch {trainer.current_epoch}/{batch_idx}", flush=True)
        time.sleep(self.seconds)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment, with the repository importable and output unbuffered."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def restore_default_signals() -> None:
    """``preexec_fn`` of a child that tests signal handling: Ctrl-C as in a terminal.

    A shell that starts a command in the background (a CI runner, ``pytest ... &``) makes it
    ignore SIGINT, and children inherit that; Python then never raises KeyboardInterrupt.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def sap_process(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """``sap ARGS`` in a subprocess, output to ``log`` (to signal it while it runs)."""
    handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - the child owns it until it exits
    return subprocess.Popen(
        [sys.executable, "-m", "sap.cli", *args],
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=subprocess_env(),
        preexec_fn=restore_default_signals,
    )


def run_sap(args: list[str], cwd: Path, timeout_s: float = 600, **env: str):
    """``sap ARGS`` in a subprocess; the completed process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "sap.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=subprocess_env(**env),
    )


def wait_until(condition: Callable[[], bool], timeout_s: float = 600, poll_s: float = 0.05) -> None:
    """Wait for ``condition()``; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(poll_s)


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout_s: float = 300) -> int:
    """Send ``signum`` to ``process`` and return its exit status."""
    process.send_signal(signum)
    return process.wait(timeout=timeout_s)


def exit_status(returncode: int) -> int:
    """A subprocess's status as a shell reports it (``128 + n`` when killed by signal ``n``)."""
    return 128 - returncode if returncode < 0 else returncode


def last_checkpoints(root: Path) -> list[Path]:
    """Every ``last.ckpt`` under ``root``, oldest first."""
    return sorted(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)


def load(path: Path) -> dict:
    """A checkpoint as plain data (``weights_only=True``)."""
    return torch.load(path, weights_only=True, map_location="cpu")


def logged_rows(folder: Path) -> list[dict[str, str]]:
    """Rows of every ``metrics.csv`` under ``folder``, in file order."""
    rows: list[dict[str, str]] = []
    for metrics_file in sorted(folder.rglob("metrics.csv")):
        with open(metrics_file, encoding="utf-8", newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def differing_tensors(a: dict, b: dict) -> list[str]:
    """Keys whose tensors differ (bitwise) between two state dicts."""
    return [key for key in a if not torch.equal(a[key], b[key])]
