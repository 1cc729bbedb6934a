"""What does Gradient Centralization cost per training step, on this backend?

Times a training step of `keras_gc.wrap(optimizer)` against the bare
`optimizer`, on two copies of a model built from the same weights, in one
process, with the backend from `KERAS_BACKEND`. Rounds go through every order
of the arms, warm-up steps are excluded, and each round gives one wrapped/bare
ratio: the table shows the median ratio, its 95% confidence interval and the
interquartile range, because a shared CPU is noisy and only paired,
interleaved rounds survive that. Each workload has a target ratio, and the
table says whether the interval shows it met. Rounds go on until each
measurement has taken `--seconds`, so short steps get many. A round is one
`fit` over enough steps that `fit`'s own fixed cost (measured first) is a
small share of it, since it would pull the ratio toward 1. With `--control`,
a second bare twin runs in the same rounds (an A/A test), to show how far
apart two identical arms come out on this machine.

Workloads (`workloads`):

- `hoh`: the horse-or-human CNN (a large Dense kernel; compute heavy, long
  steps).
- `dense60`: 60 `Dense(64)` layers, batch 32 (many small kernels, short
  steps: the per-variable overhead shows here).
- `resnet50`: `keras.applications.ResNet50(weights=None)` at a small input
  size (53 convolution kernels of many shapes).

It also measures, unless told not to: on JAX, the bytes and flops of the
compiled step from XLA's cost analysis and the ops it launches, which do not
depend on the machine's load (`cost`); the peak memory of each arm in a fresh
process (`memory`); the GC pass alone against its memory floor and its
backend's, the ops it runs, and its fixed cost per kernel against the peers'
(`gc_pass`, `op_counts`, `floors`); and the peers in their own training loops,
optax's `centralize` on JAX and pytorch-optimizer's `centralize_gradient` on
PyTorch (`peers`). `python -m benchmarks.gpu_check` is the first step of
`nox -s gpu-check`.

It prints a table (`report`) and, with `--output DIR`, writes
`benchmark-<backend>.json` (every number, every round) and
`benchmark-<backend>.md` (the tables). From the repository's root:

    KERAS_BACKEND=jax python -m benchmarks --quick --output bench
    KERAS_BACKEND=torch python -m benchmarks --workloads dense60 \\
        --optimizers adam --modes eager --rounds 21
    python -m benchmarks --help

or `nox -s bench-<backend> -- <arguments>`. On a shared or small machine,
`--threads 1` (torch and TensorFlow) gives much steadier numbers: two intra-op
threads fighting other processes for two cores can make a step ten times
slower, at random.
"""
