"""The processes that tests/test_multiprocess.py starts (this file as a script).

    python _multiprocess_workers.py BACKEND RANK WORLD ADDRESS OUT

Each process joins the others at ADDRESS, then trains the model of
examples/distributed/ once per entry of RUNS with that example's own `train`
(JAX `fit` under `DataParallel`, TensorFlow's custom loop under
`MultiWorkerMirroredStrategy`, PyTorch's loop around `DistributedDataParallel`).
It saves the weights it ends with to OUT/rank<RANK>.npz and prints one JSON
line of facts for the tests to check. Every listening socket is on 127.0.0.1
(checked: the facts list them), except TensorFlow's gRPC server, which the
test runs in a private network namespace.

Backends are imported inside the functions: pytest imports this module to
collect doctests on every backend.
"""

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _multiprocess import listening_addresses

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "distributed"
# "sgd-agc" adds adaptive gradient clipping, which must see the all-reduced
# gradient: it is not linear.
RUNS = (
    "sgd/gradient",
    "sgd/update",
    "adam/gradient",
    "adam/update",
    "sgd-agc/gradient",
)
# Process 1 wraps its optimizer without GC; the tests must catch it.
NO_GC_ON_ONE = "sgd/gradient/no-gc-on-1"


def make_optimizer(run: str, rank: int) -> Any:
    """The optimizer of `run` ("sgd/update", ...) for the process `rank`."""
    import keras

    import keras_gc

    name, mode, *control = run.split("/")
    if name.startswith("sgd"):
        inner = keras.optimizers.SGD(0.1, momentum=0.9)
    else:
        inner = keras.optimizers.Adam(0.01)
    skip_gc = bool(control) and rank == 1
    agc = {"agc": 0.01} if name.endswith("agc") else {}
    # `exclude=".*"`: the same wrapper, centralizing no variable.
    return keras_gc.wrap(inner, mode=mode, exclude=".*" if skip_gc else None, **agc)


def _example(name: str) -> Any:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def _put(arrays: dict[str, np.ndarray], prefix: str, values: Any) -> None:
    """Stores a list of arrays as `prefix/0`, `prefix/1`, ..."""
    for i, value in enumerate(values):
        arrays[f"{prefix}/{i}"] = np.asarray(value)


# ---------------------------------------------------------------------------
# JAX: keras.distribution over the devices of all processes.


def _jax(
    rank: int, world: int, address: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from jax._src.lib import _jax

    # Gloo listens on the address the host name resolves to, which need not be
    # loopback; JAX offers no setting for it, so pass one where it is made.
    make_collectives = _jax.make_gloo_tcp_collectives
    _jax.make_gloo_tcp_collectives = functools.partial(
        make_collectives, hostname="127.0.0.1"
    )
    # The coordinator would listen on [::]:port otherwise.
    os.environ["JAX_COORDINATOR_BIND_ADDRESS"] = address
    example = _example("jax_data_parallel")  # Sets the gloo collectives.
    import jax
    import keras

    keras.distribution.initialize(address, world, rank)
    arrays: dict[str, np.ndarray] = {}
    for run in (*RUNS, NO_GC_ON_ONE):
        model, _ = example.train(functools.partial(make_optimizer, run, rank))
        _put(arrays, run, model.get_weights())
    kernel = model.trainable_variables[0].value
    facts = {
        "processes": jax.process_count(),
        "devices": len(jax.devices()),
        "kernel_devices": len(kernel.sharding.device_set),
        "kernel_replicated": kernel.sharding.is_fully_replicated,
    }
    return arrays, facts


# ---------------------------------------------------------------------------
# TensorFlow: MultiWorkerMirroredStrategy, one CPU replica per worker.


def _tensorflow(
    rank: int, world: int, address: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    workers = address.split(",")
    assert len(workers) == world, (workers, world)
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}
    )
    example = _example("tf_multi_worker")
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    arrays: dict[str, np.ndarray] = {}
    for run in (*RUNS, NO_GC_ON_ONE):
        optimizer = functools.partial(make_optimizer, run, rank)
        model, _ = example.train(strategy, optimizer)
        _put(arrays, run, model.get_weights())
    facts = {
        "replicas": strategy.num_replicas_in_sync,
        "fit_error": _tf_fit_error(strategy),
    }
    return arrays, facts


def _tf_fit_error(strategy: Any) -> str | None:
    """What Keras' own `fit` does under the strategy, with a plain optimizer."""
    import keras
    from common import GLOBAL_BATCH, make_data, make_model

    with strategy.scope():
        model = make_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = make_data()
    try:
        model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    except Exception as error:  # Keras' error, reported for the test to check.
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


# ---------------------------------------------------------------------------
# PyTorch: DistributedDataParallel over gloo.


def _torch(
    rank: int, world: int, address: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    # Gloo's sockets on the loopback interface; a file store, so no TCP store
    # listens anywhere.
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)
    example = _example("torch_ddp")
    from common import make_model

    arrays: dict[str, np.ndarray] = {}
    facts: dict[str, Any] = {"apply_calls": {}}
    for run in (*RUNS, NO_GC_ON_ONE):
        optimizer = make_optimizer(run, rank)
        steps = _record_apply(optimizer)
        model, _ = example.train(make_model(), optimizer)
        _put(arrays, run, model.get_weights())
        facts["apply_calls"][run] = len(steps)
        for step, recorded in enumerate(steps):
            for name, values in recorded.items():
                _put(arrays, f"{run}/step{step}/{name}", values)
    _put(arrays, "fit", _torch_fit(rank, world))
    facts["listening"] = listening_addresses()
    dist.destroy_process_group()
    return arrays, facts


def _record_apply(optimizer: Any) -> list[dict[str, list]]:
    """Records each `optimizer.apply`: its gradients before and after, and the
    step it made.

    The wrapper centralizes the gradient that is its variable's own `.grad` in
    place, so "after" shows what GC made of the gradient.
    """
    steps: list[dict[str, list]] = []
    apply = optimizer.apply

    def copies(tensors: list) -> list[np.ndarray]:
        return [t.detach().numpy().copy() for t in tensors]

    def apply_and_record(grads: list, variables: list) -> None:
        before, old = copies(grads), copies([v.value for v in variables])
        apply(grads, variables)
        new = copies([v.value for v in variables])
        steps.append(
            {
                "before": before,
                "after": copies(grads),
                "step": [n - o for n, o in zip(new, old, strict=True)],
            }
        )

    optimizer.apply = apply_and_record
    return steps


def _torch_fit(rank: int, world: int) -> list[Any]:
    """Keras `fit` on a model that sits inside a DDP module, on this shard."""
    from common import EPOCHS, GLOBAL_BATCH, make_data, make_model
    from torch.nn.parallel import DistributedDataParallel

    model = make_model()
    ddp_model = DistributedDataParallel(model)
    model.compile(optimizer=make_optimizer("sgd/gradient", rank), loss="mse")
    x, y = make_data()
    model.fit(
        x[rank::world],
        y[rank::world],
        batch_size=GLOBAL_BATCH // world,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
    )
    assert ddp_model.module is model
    return model.get_weights()


WORKERS: dict[
    str, Callable[[int, int, str], tuple[dict[str, np.ndarray], dict[str, Any]]]
] = {
    "jax": _jax,
    "tensorflow": _tensorflow,
    "torch": _torch,
}


def main(backend: str, rank: str, world: str, address: str, out: str) -> None:
    arrays, facts = WORKERS[backend](int(rank), int(world), address)
    facts.setdefault("listening", listening_addresses())
    np.savez(Path(out) / f"rank{rank}.npz", **arrays)
    print(json.dumps(facts))


if __name__ == "__main__":
    main(*sys.argv[1:])
