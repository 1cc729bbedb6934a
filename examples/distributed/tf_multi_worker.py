r"""Gradient Centralization with TensorFlow's MultiWorkerMirroredStrategy.

Every worker runs this script with its own `TF_CONFIG`. The model and the
optimizer are created in `strategy.scope()`; a custom loop calls the wrapper's
`apply` in `strategy.run`. Each worker centralizes its own replica's gradient,
then the inner optimizer all-reduces it over the workers: exact, because GC is
linear. Each worker prints the same weight digest at the end.

Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy with or without GC
(keras-team/keras#20585, see docs/distributed.md), hence the custom loop.

Two workers on one machine:

    C='"cluster": {"worker": ["127.0.0.1:12321", "127.0.0.1:12322"]}'
    TF_CONFIG="{$C, \"task\": {\"type\": \"worker\", \"index\": 0}}" \
        python examples/distributed/tf_multi_worker.py &
    TF_CONFIG="{$C, \"task\": {\"type\": \"worker\", \"index\": 1}}" \
        python examples/distributed/tf_multi_worker.py

On a cluster, list every worker's `host:port` under "worker" and give each its
own index (see docs/distributed.md for SLURM and Kubernetes).
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

from collections.abc import Callable

import keras
import tensorflow as tf
from common import EPOCHS, GLOBAL_BATCH, make_data, make_model, report

import keras_gc


def train(
    strategy: tf.distribute.Strategy,
    make_optimizer: Callable[[], keras.optimizers.Optimizer],
) -> tuple[keras.Model, float]:
    """Trains `make_model()` in a custom loop over the strategy's replicas.

    Returns:
        The model, with the same weights on every worker, and the last loss.
    """
    with strategy.scope():
        model = make_model()
        optimizer = make_optimizer()
        # Keras optimizers cannot create their variables inside strategy.run.
        optimizer.build(model.trainable_variables)
    per_sample = keras.losses.MeanSquaredError(reduction="sum")
    x, y = make_data()
    # The strategy splits each global batch over the workers' replicas.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    batches = strategy.experimental_distribute_dataset(dataset.repeat(EPOCHS))

    @tf.function
    def step(x_batch: tf.Tensor, y_batch: tf.Tensor) -> tf.Tensor:
        def replica_step(x_batch: tf.Tensor, y_batch: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                # Divided by the global batch: the all-reduce sums replicas.
                loss = per_sample(y_batch, model(x_batch)) / GLOBAL_BATCH
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        losses = strategy.run(replica_step, args=(x_batch, y_batch))
        return strategy.reduce("SUM", losses, axis=None)

    for x_batch, y_batch in batches:
        loss = step(x_batch, y_batch)
    return model, float(loss)


def main() -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # Reads TF_CONFIG.
    model, loss = train(
        strategy, lambda: keras_gc.wrap(keras.optimizers.SGD(0.1, momentum=0.9))
    )
    resolver = strategy.cluster_resolver
    workers = resolver.cluster_spec().num_tasks("worker")
    report(resolver.task_id, workers, loss, model)


if __name__ == "__main__":
    main()
