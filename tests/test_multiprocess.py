"""Two processes on 127.0.0.1 train like one: JAX, TensorFlow and PyTorch.

Per backend, one launch starts two processes (tests/_multiprocess.py) that
join each other over loopback and train the model of examples/distributed/
with that example's own `train` (tests/_multiprocess_workers.py): JAX `fit`
under `keras.distribution.DataParallel` after `keras.distribution.initialize`
(gloo collectives), TensorFlow's custom loop under `MultiWorkerMirroredStrategy`,
and PyTorch's loop around `DistributedDataParallel` (gloo). Each process feeds
half of every global batch of 16. The weights each ends with must equal, within
`TOLERANCE`, those of one process, this one, training the same model with plain
`fit` on the same global batches: SGD with momentum and Adam, GC on the
gradient and on the update, 8 steps each.

Tolerance. One process and two compute the same float32 sums in different
orders: the batch sum of each gradient is split into per-process partial sums
and all-reduced (and the custom loops sum the loss differently from `fit`).
A reordered sum of n terms differs by up to about n * 2**-24 relative, n at most
16 * 16 = 256 here (the batch times the conv's output positions): 1.5e-5 in the
worst case, about sqrt(n) * 2**-24 = 1e-6 typically. Adam's division by
sqrt(v) passes relative errors through unchanged, and the weights are of size
about 1. The measured maximum over all backends and runs is in
docs/distributed.md; `TOLERANCE = 2e-5` stays above the worst case, while
skipping GC on one process puts a process's weights at least 100 times as far
(checked in every launch: process 1 then wraps its optimizer without GC). The
PyTorch checks of each step's gradient and update use the same bound: their
values are smaller (below 0.3), and without GC their per-output means are
above 9e-4.
"""

import importlib.util
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import _multiprocess
import numpy as np
import pytest
from _multiprocess_workers import EXAMPLES, NO_GC_ON_ONE, RUNS, make_optimizer

WORKER = Path(__file__).with_name("_multiprocess_workers.py")
TOLERANCE = 2e-5
TIMEOUT_S = 300  # For the whole launch; both processes are killed after it.
WORLD = 2
STEPS = 8  # 2 epochs of 64 samples in global batches of 16.


def _common() -> Any:
    """examples/distributed/common.py: the model and the data."""
    spec = importlib.util.spec_from_file_location("common", EXAMPLES / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch(backend: str, out: Path, isolated: bool = False) -> tuple[list, list]:
    """Runs the workers; returns each one's facts and arrays."""
    if backend == "torch":
        address = f"file://{out / 'store'}"
    else:
        ports = _multiprocess.free_ports(WORLD if backend == "tensorflow" else 1)
        address = ",".join(f"127.0.0.1:{port}" for port in ports)
    env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    commands = [
        (
            [
                sys.executable,
                str(WORKER),
                backend,
                str(rank),
                str(WORLD),
                address,
                str(out),
            ],
            env,
        )
        for rank in range(WORLD)
    ]
    outputs = _multiprocess.run(commands, TIMEOUT_S, isolated=isolated)
    facts = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    arrays = [dict(np.load(out / f"rank{rank}.npz")) for rank in range(WORLD)]
    return facts, arrays


def _get(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    count = sum(1 for key in arrays if key.rsplit("/", 1)[0] == prefix)
    assert count, f"no arrays under {prefix!r}"
    return [arrays[f"{prefix}/{i}"] for i in range(count)]


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def _fit_one_process(run: str, share: int | None = None) -> list[np.ndarray]:
    """Plain `fit` in this process on the global batches, or on process
    `share`'s half of each."""
    common = _common()
    model = common.make_model()
    model.compile(optimizer=make_optimizer(run, rank=0), loss="mse")
    x, y = common.make_data()
    rows = slice(None) if share is None else slice(share, None, WORLD)
    model.fit(
        x[rows],
        y[rows],
        batch_size=common.GLOBAL_BATCH // (1 if share is None else WORLD),
        epochs=common.EPOCHS,
        shuffle=False,
        verbose=0,
    )
    return model.get_weights()


@pytest.fixture(scope="module")
def one_process() -> dict[str, list[np.ndarray]]:
    """One process's weights after each run, on the backend under test."""
    return {run: _fit_one_process(run) for run in RUNS}


def _check_equals_one_process(arrays: list, one_process: dict, run: str) -> None:
    for rank in range(WORLD):
        diff = _max_diff(_get(arrays[rank], run), one_process[run])
        assert diff < TOLERANCE, f"process {rank}, {run}: {diff:.2e}"


def _check_gc_skip_caught(arrays: list, one_process: dict) -> None:
    # Process 1 wrapped without GC: its weights, or both, leave the tolerance.
    reference = one_process[NO_GC_ON_ONE.rsplit("/", 1)[0]]
    diffs = [_max_diff(_get(a, NO_GC_ON_ONE), reference) for a in arrays]
    assert max(diffs) > 100 * TOLERANCE, diffs


def _check_loopback_only(facts: list) -> None:
    for rank, fact in enumerate(facts):
        assert fact["listening"], f"process {rank} listens on nothing?"
        outside = [a for a in fact["listening"] if not _multiprocess.is_loopback(a)]
        assert not outside, f"process {rank} listens on {outside}"


# ---------------------------------------------------------------------------
# JAX


@pytest.fixture(scope="module")
def jax_launch(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    return _launch("jax", tmp_path_factory.mktemp("jax"))


@pytest.mark.jax
@pytest.mark.parametrize("run", RUNS)
def test_jax_processes_train_like_one_process(jax_launch, one_process, run):
    _, arrays = jax_launch
    _check_equals_one_process(arrays, one_process, run)
    # Every process holds the same replicated weights, bit for bit.
    assert _max_diff(_get(arrays[0], run), _get(arrays[1], run)) == 0.0


@pytest.mark.jax
def test_jax_weights_span_both_processes_devices(jax_launch):
    facts, _ = jax_launch
    for fact in facts:
        assert fact["processes"] == WORLD and fact["devices"] == WORLD
        assert fact["kernel_devices"] == WORLD and fact["kernel_replicated"]


@pytest.mark.jax
def test_jax_skipping_gc_on_one_process_is_caught(jax_launch, one_process):
    _check_gc_skip_caught(jax_launch[1], one_process)


@pytest.mark.jax
def test_jax_listens_on_loopback_only(jax_launch):
    _check_loopback_only(jax_launch[0])


# ---------------------------------------------------------------------------
# TensorFlow: its gRPC server binds 0.0.0.0, so the workers run in a private
# network namespace that has only a loopback interface.


@pytest.fixture(scope="module")
def tf_launch(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    reason = _multiprocess.isolation_error()
    if reason is not None:
        pytest.skip(f"TensorFlow's gRPC server would listen on 0.0.0.0; {reason}")
    return _launch("tensorflow", tmp_path_factory.mktemp("tf"), isolated=True)


@pytest.mark.tensorflow
@pytest.mark.parametrize("run", RUNS)
def test_tf_workers_train_like_one_process(tf_launch, one_process, run):
    facts, arrays = tf_launch
    assert [fact["replicas"] for fact in facts] == [WORLD] * WORLD
    _check_equals_one_process(arrays, one_process, run)
    assert _max_diff(_get(arrays[0], run), _get(arrays[1], run)) == 0.0


@pytest.mark.tensorflow
def test_tf_skipping_gc_on_one_worker_is_caught(tf_launch, one_process):
    _check_gc_skip_caught(tf_launch[1], one_process)


@pytest.mark.tensorflow
def test_tf_keras_fit_fails_under_multi_worker_strategy(tf_launch):
    # Keras 3.15's `fit` reduces the first batch, a tuple of PerReplica values,
    # which MultiWorkerMirroredStrategy cannot do (keras-team/keras#20585), with
    # a plain optimizer. If this fails, Keras fixed it: test `fit` for equality
    # and update docs/distributed.md.
    for fact in tf_launch[0]:
        assert fact["fit_error"] is not None, "Keras fit ran under MWMS"
        assert "PerReplica" in fact["fit_error"], fact["fit_error"]


# ---------------------------------------------------------------------------
# PyTorch


@pytest.fixture(scope="module")
def torch_launch(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    return _launch("torch", tmp_path_factory.mktemp("torch"))


@pytest.mark.torch
@pytest.mark.parametrize("run", RUNS)
def test_torch_ddp_trains_like_one_process(torch_launch, one_process, run):
    _, arrays = torch_launch
    _check_equals_one_process(arrays, one_process, run)
    assert _max_diff(_get(arrays[0], run), _get(arrays[1], run)) == 0.0


def _centralized(gradient: np.ndarray) -> np.ndarray:
    """NumPy GC of a Conv2D or Dense kernel's gradient (output axis last)."""
    if gradient.ndim == 1:
        return gradient  # A bias.
    return gradient - gradient.mean(axis=tuple(range(gradient.ndim - 1)), keepdims=True)


def _first_global_gradient() -> list[np.ndarray]:
    """One process's gradient on the first global batch."""
    import torch

    common = _common()
    model = common.make_model()
    first = slice(common.GLOBAL_BATCH)
    x, y = (torch.from_numpy(a[first]) for a in common.make_data())
    torch.mean((model(x) - y) ** 2).backward()
    return [v.value.grad.numpy() for v in model.trainable_variables]


@pytest.mark.torch
@pytest.mark.parametrize("run", RUNS)
def test_torch_gc_runs_once_per_step_on_the_averaged_gradient(torch_launch, run):
    facts, arrays = torch_launch
    assert [fact["apply_calls"][run] for fact in facts] == [STEPS] * WORLD
    for step, rank in itertools.product(range(STEPS), range(WORLD)):
        before = _get(arrays[rank], f"{run}/step{step}/before")
        after = _get(arrays[rank], f"{run}/step{step}/after")
        # `apply` gets the same gradient on every process: DDP's average.
        assert _max_diff(before, _get(arrays[0], f"{run}/step{step}/before")) == 0
        if "agc" in run:
            # AGC then GC write new tensors, not `.grad`; the weights test
            # checks their step.
            continue
        if run.endswith("gradient"):
            # GC, in place on `.grad`, made that average centralized.
            expected = [_centralized(g) for g in before]
            assert _max_diff(after, expected) < TOLERANCE, (step, rank)
        else:
            # GC left the gradient alone and centralized the step instead.
            assert _max_diff(after, before) == 0, (step, rank)
            steps = _get(arrays[rank], f"{run}/step{step}/step")
            assert _max_diff(steps, [_centralized(s) for s in steps]) < TOLERANCE
    # And that average is one process's gradient on the whole global batch.
    first = _get(arrays[0], f"{run}/step0/before")
    assert _max_diff(first, _first_global_gradient()) < TOLERANCE


@pytest.mark.torch
def test_torch_skipping_gc_on_one_process_is_caught(torch_launch, one_process):
    _check_gc_skip_caught(torch_launch[1], one_process)


@pytest.mark.torch
def test_torch_keras_fit_does_not_average_under_ddp(torch_launch):
    # `fit` calls the Keras model, not the DDP module around it, so DDP never
    # averages: each process trains alone on its half of every batch.
    _, arrays = torch_launch
    fitted = [_get(a, "fit") for a in arrays]
    assert _max_diff(fitted[0], fitted[1]) > 100 * TOLERANCE
    for rank in range(WORLD):
        alone = _fit_one_process("sgd/gradient", share=rank)
        assert _max_diff(fitted[rank], alone) < TOLERANCE, rank


@pytest.mark.torch
def test_torch_listens_on_loopback_only(torch_launch):
    _check_loopback_only(torch_launch[0])
