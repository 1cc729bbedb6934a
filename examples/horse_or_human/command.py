"""Does Gradient Centralization help on horse-or-human, and what does it cost?

Trains the classic horse-or-human model (a small CNN, RMSprop(1e-4), batch
128, 8 steps per epoch, 10 epochs, 300x300 inputs, the classic augmentation)
twice per seed: with the bare optimizer and with `keras_gc.wrap` around it.
Both runs start from the same weights and see the same batches and the same
augmentation; only the optimizer differs. It prints a table of timings and
final metrics (with `--seeds N`: mean, spread and the paired GC-minus-bare
difference), then one verdict line per headline measure (the 95% interval of
GC minus bare over the seeds), and writes the table, a JSON file with every
number and a PNG of the curves to `--output`.

The data are the public archives (from the Keras cache, or downloaded and
checked); offline, a synthetic stand-in is drawn instead, and said so in every
output. On the synthetic images the defaults are 48x48 inputs and 12 epochs,
where the classic CNN learns them in a few minutes on a CPU.

    KERAS_BACKEND=jax python -m examples.horse_or_human --data synthetic --seeds 3
    python -m examples.horse_or_human --help
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import keras

import keras_gc
from keras_gc.comparison import compare

from .archives import TRAIN_ARCHIVE, VALIDATION_ARCHIVE, Archive
from .data import Batches, get_folders, read_images
from .model import build_model

# Where the classic CNN learns the synthetic stand-in within a few CPU minutes
# (see docs/horse_or_human.md, "Calibration").
SYNTHETIC_IMAGE_SIZE = 48
SYNTHETIC_EPOCHS = 12

_NOT_AN_OPTIMIZER = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}
OPTIMIZERS = {
    name.lower(): cls
    for name, cls in vars(keras.optimizers).items()
    if isinstance(cls, type)
    and issubclass(cls, keras.optimizers.Optimizer)
    and name not in _NOT_AN_OPTIMIZER
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _optimizer(text: str) -> str:
    if text.lower() not in OPTIMIZERS:
        raise argparse.ArgumentTypeError(
            f"unknown optimizer {text!r}; choose one of {', '.join(sorted(OPTIMIZERS))}"
        )
    return text.lower()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.horse_or_human",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data",
        nargs="+",
        default=["auto"],
        metavar="SOURCE",
        help="auto (cache or download, else synthetic), real, synthetic, a folder "
        "holding the two zip files or the folders they extract to, or two paths "
        "(training, validation)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive,
        help=f"default: 10 (the classic recipe), {SYNTHETIC_EPOCHS} on synthetic data",
    )
    parser.add_argument("--steps-per-epoch", type=_positive, default=8)
    parser.add_argument("--validation-steps", type=_positive, default=8)
    parser.add_argument("--batch-size", type=_positive, default=128)
    parser.add_argument("--validation-batch-size", type=_positive, default=32)
    parser.add_argument(
        "--image-size",
        type=_positive,
        help="side of the square input; default: 300 (the classic recipe), "
        f"{SYNTHETIC_IMAGE_SIZE} on synthetic data",
    )
    parser.add_argument(
        "--optimizer",
        type=_optimizer,
        default="rmsprop",
        help="a built-in Keras optimizer: " + ", ".join(sorted(OPTIMIZERS)),
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--gc-mode",
        choices=keras_gc.MODES,
        default="gradient",
        help="centralize the gradient (the paper's GC) or the optimizer's update",
    )
    parser.add_argument(
        "--conv-only", action="store_true", help="centralize conv kernels only (GCC)"
    )
    parser.add_argument(
        "--seeds", type=_positive, default=1, help="pairs of runs (seeds 0..N-1)"
    )
    parser.add_argument("--output", default="horse_or_human_results", metavar="DIR")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def _make_optimizer(name: str, learning_rate: float) -> Callable[[], keras.Optimizer]:
    return lambda: OPTIMIZERS[name](learning_rate=learning_rate)


def main(
    argv: Sequence[str] | None = None,
    *,
    archives: tuple[Archive, Archive] = (TRAIN_ARCHIVE, VALIDATION_ARCHIVE),
) -> int:
    """Runs the comparison; `archives` are the training and validation
    archives to download (tests serve their own)."""
    args = parse_args(argv)
    data = args.data[0] if len(args.data) == 1 else args.data
    folders = get_folders(
        data,
        train_archive=archives[0],
        validation_archive=archives[1],
        verbose=not args.quiet,
    )
    synthetic = folders.source == "synthetic"
    size = args.image_size or (SYNTHETIC_IMAGE_SIZE if synthetic else 300)
    epochs = args.epochs or (SYNTHETIC_EPOCHS if synthetic else 10)
    what = (
        "SYNTHETIC stand-in (drawn shapes, not the real photos)"
        if synthetic
        else f"{folders.source} data"
    )
    title = (
        f"horse-or-human, {what}, {size}x{size}, {epochs} epoch"
        f"{'s' if epochs > 1 else ''}, "
        f"{keras.backend.backend()}"
    )
    print(f"{title}. From {folders.origin}. Reading images...")
    train_images, train_labels = read_images(folders.train, size)
    validation = Batches(
        *read_images(folders.validation, size),
        batch_size=args.validation_batch_size,
    )
    result = compare(
        lambda: build_model(size),
        _make_optimizer(args.optimizer, args.learning_rate),
        lambda seed: Batches(
            train_images,
            train_labels,
            batch_size=args.batch_size,
            shuffle=True,
            seed=seed,
        ),
        validation,
        loss="binary_crossentropy",
        metrics=["accuracy"],
        epochs=epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps,
        seeds=args.seeds,
        wrap=lambda optimizer: keras_gc.wrap(
            optimizer, mode=args.gc_mode, conv_only=args.conv_only
        ),
        # Bars on a terminal; one line per epoch in a log (nox, CI, a file).
        verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2),
        metadata={
            "data": {
                "source": folders.source,
                "origin": folders.origin,
                "train_images": len(train_images),
                "validation_images": len(validation.images),
            },
            "options": vars(args) | {"image_size": size, "epochs": epochs},
            "title": title,
        },
    )
    paths = result.save(args.output, plot=not args.no_plot)
    print()
    print(result.table())
    print("\n".join(result.verdict_lines()))
    print()
    for what, path in paths.items():
        print(f"{what.capitalize():>5}: {os.path.abspath(path)}")
    return 0
