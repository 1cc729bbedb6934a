"""The GPU check's own steps: refuse without a GPU, then name the backend's device.

`nox -s gpu-check` runs `python -m benchmarks.gpu_check` before it installs
anything: with no NVIDIA GPU visible it exits with an error naming the missing
GPU, within `TIMEOUT` seconds, instead of going on to test the CPU. After each
backend's CUDA build is installed, `python -m benchmarks.gpu_check --backend`
prints the device Keras will run on, and fails if that is not a GPU. This
module imports only the standard library until then.
"""

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

TIMEOUT = 30


class NoGPUError(RuntimeError):
    """No NVIDIA GPU is visible to this process."""


def nvidia_gpus(timeout: float = TIMEOUT) -> list[str]:
    """The NVIDIA GPUs `nvidia-smi` lists, one line each.

    Args:
        timeout: Seconds to wait for `nvidia-smi`.

    Returns:
        `"name, memory, driver"` of each GPU.

    Raises:
        NoGPUError: `nvidia-smi` is not on `PATH`, fails, hangs or lists none.
    """
    executable = shutil.which("nvidia-smi")
    if executable is None:
        raise NoGPUError(
            "No NVIDIA GPU: `nvidia-smi` is not on PATH. The GPU check needs a "
            "machine with an NVIDIA GPU and its driver; on a CPU-only machine "
            "run `nox -s tests-<backend>` instead."
        )
    query = "--query-gpu=name,memory.total,driver_version"
    try:
        done = subprocess.run(
            [executable, query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise NoGPUError(
            f"No NVIDIA GPU: `nvidia-smi` gave no answer in {timeout:g} s."
        ) from error
    gpus = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode or not gpus:
        raise NoGPUError(
            f"No NVIDIA GPU: `nvidia-smi` exited with {done.returncode} and "
            f"listed none: {(done.stderr or done.stdout).strip()[-500:]}"
        )
    return gpus


def backend_device() -> str:
    """The accelerator the installed Keras backend will use.

    Raises:
        NoGPUError: The backend sees no GPU (a CPU build, or no driver).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = [str(d) for d in jax.devices() if d.platform == "gpu"]
    elif backend == "tensorflow":
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_physical_devices("GPU")]
    else:
        import torch

        devices = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
    if not devices:
        raise NoGPUError(
            f"No GPU for Keras on {backend}: is the CUDA build installed? "
            "(KERAS_BACKEND=" + os.environ.get("KERAS_BACKEND", "") + ")"
        )
    return f"{backend}: {', '.join(devices)}"


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the GPUs (or the backend's GPU); exits 1, saying why, without one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend",
        action="store_true",
        help="name the device of the Keras backend in KERAS_BACKEND",
    )
    args = parser.parse_args(argv)
    try:
        print("\n".join([backend_device()] if args.backend else nvidia_gpus()))
    except NoGPUError as error:
        print(f"gpu-check: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
