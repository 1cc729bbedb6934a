"""Gradient Centralization in JAX data-parallel training across processes.

Every process runs this script. `keras.distribution.initialize()` joins them
through process 0 (the coordinator), `DataParallel` replicates the weights on
the devices of all processes, and each process feeds its share of every global
batch to `fit`. GC needs nothing special: it runs inside the jitted step, on the
gradient after XLA has summed it over all devices. Each process prints the same
weight digest at the end.

Two processes on one machine (CPU; gloo carries the collectives):

    export KERAS_DISTRIBUTION_JOB_ADDRESSES=127.0.0.1:12321
    export KERAS_DISTRIBUTION_NUM_PROCESSES=2
    KERAS_DISTRIBUTION_PROCESS_ID=0 python examples/distributed/jax_data_parallel.py &
    KERAS_DISTRIBUTION_PROCESS_ID=1 python examples/distributed/jax_data_parallel.py

On a cluster, run it once per host with `KERAS_DISTRIBUTION_JOB_ADDRESSES` set to
host 0's `address:port` and each host's own `KERAS_DISTRIBUTION_PROCESS_ID`
(see docs/distributed.md for SLURM, TPU pods and Kubernetes).
"""

import os
from collections.abc import Callable

os.environ["KERAS_BACKEND"] = "jax"

import jax
import keras
from common import EPOCHS, GLOBAL_BATCH, make_data, make_model, report

import keras_gc

# Cross-process collectives on CPU (already the default in JAX 0.10; GPUs and
# TPUs use their own). Must be set before JAX starts its CPU backend.
jax.config.update("jax_cpu_collectives_implementation", "gloo")


def train(
    make_optimizer: Callable[[], keras.optimizers.Optimizer],
) -> tuple[keras.Model, float]:
    """Trains `make_model()` with `fit` on all processes' devices at once.

    Returns:
        The model, with weights replicated on every device, and the last loss.
    """
    distribution = keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()  # Of every process.
    )
    # Each process passes its own rows; Keras must not shard them again.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    # Variables made from here on live on every process's devices: the model's
    # and the optimizer's (so make the optimizer here, not before).
    model = make_model()
    model.compile(optimizer=make_optimizer(), loss="mse")
    x, y = make_data()
    # Process p takes rows p, p + n, p + 2n, ...: its share of each global
    # batch of GLOBAL_BATCH rows, which the processes feed together.
    p, n = jax.process_index(), jax.process_count()
    history = model.fit(
        x[p::n],
        y[p::n],
        batch_size=GLOBAL_BATCH // n,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
    )
    return model, history.history["loss"][-1]


def main() -> None:
    # Reads KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES and _PROCESS_ID.
    keras.distribution.initialize()
    model, loss = train(lambda: keras_gc.wrap(keras.optimizers.SGD(0.1, momentum=0.9)))
    report(jax.process_index(), jax.process_count(), loss, model)


if __name__ == "__main__":
    main()
