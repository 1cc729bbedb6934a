"""benchmarks.gpu_check: `nox -s gpu-check` refuses to run without a GPU."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_free

ROOT = Path(__file__).parents[1]


def check(path: Path) -> subprocess.CompletedProcess:
    """Runs the check as `nox -s gpu-check` does, with only `path` on PATH."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PATH": str(path)},
        timeout=60,
    )


def fake_nvidia_smi(folder: Path, script: str) -> Path:
    executable = folder / "nvidia-smi"
    executable.write_text(f"#!/bin/sh\n{script}\n")
    executable.chmod(0o755)
    return folder


def test_refuses_without_nvidia_smi(tmp_path):
    done = check(tmp_path)
    assert done.returncode == 1
    assert "No NVIDIA GPU: `nvidia-smi` is not on PATH" in done.stderr
    assert done.stdout == ""


def test_refuses_when_nvidia_smi_finds_no_gpu(tmp_path):
    message = "NVIDIA-SMI has failed: no NVIDIA driver is running."
    fake_nvidia_smi(tmp_path, f"echo '{message}'; exit 9")
    done = check(tmp_path)
    assert done.returncode == 1
    assert "exited with 9" in done.stderr
    assert message in done.stderr


def test_refuses_when_nvidia_smi_lists_nothing(tmp_path):
    fake_nvidia_smi(tmp_path, "exit 0")
    done = check(tmp_path)
    assert done.returncode == 1
    assert "listed none" in done.stderr


def test_names_the_gpus_it_finds(tmp_path):
    fake_nvidia_smi(tmp_path, 'echo "NVIDIA H200, 143771 MiB, 570.86.15"')
    done = check(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "NVIDIA H200, 143771 MiB, 570.86.15\n"


def test_a_hanging_nvidia_smi_is_a_missing_gpu(tmp_path, monkeypatch):
    from benchmarks import gpu_check

    fake_nvidia_smi(tmp_path, f"exec {shutil.which('sleep')} 5")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(gpu_check.NoGPUError, match=r"no answer in 0\.5 s"):
        gpu_check.nvidia_gpus(timeout=0.5)
