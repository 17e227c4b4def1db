"""benchmarks/gpu_smoke.py: refuses a machine without CUDA clearly; its steps run on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.py"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=900
    )


def test_without_cuda_it_says_so_and_exits_2() -> None:
    result = run()
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "--allow-cpu --quick" in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_on_a_cpu_it_trains_from_the_store_predicts_and_prints_one_json_summary(
    tmp_path: Path,
) -> None:
    result = run("--allow-cpu", "--quick", "--workers", "2", "--work", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["device"] == "cpu" and summary["volume"] == [2, 64, 48, 96]
    assert summary["train_patches_per_s"] > 0 and summary["store_mib"] > 0
    assert summary["predict_peak_host_rss_mib"] >= summary["host_rss_before_predict_mib"]
    assert (tmp_path / "out" / "wholebody" / "lesion.nii.gz").exists()
