r"""Gradient Centralization with PyTorch DistributedDataParallel (DDP).

Every process runs this script (a launcher starts them). As in the Keras guide
"Multi-GPU distributed training with PyTorch", the Keras model goes inside
`torch.nn.parallel.DistributedDataParallel` and a custom loop trains it: DDP
averages the gradients over the processes during `backward()`, then the
wrapper's `apply` centralizes that averaged gradient, once per step, and the
inner optimizer takes its step. Each process prints the same weight digest.

Keras' `fit` cannot be used here: it calls the Keras model, not the DDP module,
so no gradient is averaged (see docs/distributed.md).

Two processes on one machine (CPU, gloo):

    python -m torch.distributed.run --standalone --nproc-per-node 2 \
        examples/distributed/torch_ddp.py

On a cluster, run the same launcher on every node with `--nnodes`,
`--node-rank` and `--master-addr`/`--master-port` (or a rendezvous endpoint);
see docs/distributed.md. On GPUs, use the "nccl" backend and one GPU per
process, as the Keras guide does.
"""

import os

os.environ["KERAS_BACKEND"] = "torch"

import keras
import torch
import torch.distributed as dist
from common import EPOCHS, GLOBAL_BATCH, make_data, make_model, report
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import keras_gc


def train(
    model: keras.Model, optimizer: keras.optimizers.Optimizer
) -> tuple[keras.Model, float]:
    """Trains `model` on this process's share of every global batch.

    Returns:
        The model, with the same weights in every process, and the last loss.
    """
    ddp_model = DistributedDataParallel(model)
    x, y = make_data()
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    # Without shuffling, process r takes rows r, r + n, r + 2n, ...: its share
    # of each global batch of GLOBAL_BATCH rows.
    sampler = DistributedSampler(dataset, shuffle=False)
    batch = GLOBAL_BATCH // dist.get_world_size()
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler)
    for _ in range(EPOCHS):
        for x_batch, y_batch in loader:
            loss = torch.mean((ddp_model(x_batch) - y_batch) ** 2)
            model.zero_grad()
            loss.backward()  # DDP averages the gradients over processes here.
            with torch.no_grad():
                optimizer.apply(
                    [v.value.grad for v in model.trainable_variables],
                    model.trainable_variables,
                )
    # The last step's loss, averaged over the processes (gloo has no AVG).
    total = loss.detach().clone()
    dist.all_reduce(total)
    return model, float(total) / dist.get_world_size()


def main() -> None:
    dist.init_process_group("gloo")  # Reads the launcher's RANK, WORLD_SIZE...
    try:
        optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1, momentum=0.9))
        model, loss = train(make_model(), optimizer)
        report(dist.get_rank(), dist.get_world_size(), loss, model)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
