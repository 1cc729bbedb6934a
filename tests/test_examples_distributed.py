"""examples/distributed/ runs with the one-machine launch commands it documents.

Two processes per example. Their launchers listen on every interface (JAX's
coordinator, TensorFlow's gRPC server, torchrun's rendezvous store), so they
run in a private network namespace that has only a loopback interface, and
skip where the machine cannot make one. What the examples' training computes
is checked against one process in tests/test_multiprocess.py, which runs their
`train` functions.
"""

import json
import re
import sys

import _multiprocess
import pytest
from _multiprocess_workers import EXAMPLES

TIMEOUT_S = 300
LINE = re.compile(r"process (\d+) of (\d+): loss ([\d.]+), weights ([0-9a-f]{16})")


@pytest.fixture(autouse=True)
def _needs_isolation() -> None:
    reason = _multiprocess.isolation_error()
    if reason is not None:
        pytest.skip(reason)


def _check_in_sync(outputs: list[str]) -> None:
    """Both processes report, with the same loss and the same weights."""
    reports = LINE.findall("".join(outputs))
    assert sorted(r[:2] for r in reports) == [("0", "2"), ("1", "2")], outputs
    assert len({r[2:] for r in reports}) == 1, reports


@pytest.mark.jax
def test_jax_example_runs_on_two_processes():
    (port,) = _multiprocess.free_ports(1)
    commands = [
        (
            [sys.executable, str(EXAMPLES / "jax_data_parallel.py")],
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                "KERAS_DISTRIBUTION_PROCESS_ID": str(process),
            },
        )
        for process in range(2)
    ]
    _check_in_sync(_multiprocess.run(commands, TIMEOUT_S, isolated=True))


@pytest.mark.tensorflow
def test_tf_example_runs_on_two_workers():
    workers = [f"127.0.0.1:{port}" for port in _multiprocess.free_ports(2)]
    commands = [
        (
            [sys.executable, str(EXAMPLES / "tf_multi_worker.py")],
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"worker": workers},
                        "task": {"type": "worker", "index": index},
                    }
                ),
                "TF_CPP_MIN_LOG_LEVEL": "2",
            },
        )
        for index in range(2)
    ]
    _check_in_sync(_multiprocess.run(commands, TIMEOUT_S, isolated=True))


@pytest.mark.torch
def test_torch_example_runs_under_torchrun():
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(EXAMPLES / "torch_ddp.py"),
    ]
    _check_in_sync(_multiprocess.run([(command, {})], TIMEOUT_S, isolated=True))
