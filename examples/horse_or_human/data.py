"""Finds the horse-or-human images and serves them to `fit`.

`get_folders` finds, downloads or draws the two splits; `read_images` reads
a split into memory with Pillow and NumPy; `Batches` is the `PyDataset` that
hands them to `fit`, on every backend, without TensorFlow.
"""

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .archives import (
    TRAIN_ARCHIVE,
    VALIDATION_ARCHIVE,
    Archive,
    download,
    extract,
    network_error,
)
from .images import (
    CLASS_NAMES,
    DataError,
    Folders,
    check_folder,
    image_files,
    open_rgb,
    parallel_map,
    pillow,
)
from .synthetic import make_synthetic

_LOG = logging.getLogger(__name__)


def get_folders(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = "auto",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    train_archive: Archive = TRAIN_ARCHIVE,
    validation_archive: Archive = VALIDATION_ARCHIVE,
    synthetic_seed: int = 0,
    synthetic_size: int = 300,
    verbose: bool = True,
) -> Folders:
    """Finds, fetches or draws the horse-or-human images.

    Args:
        data: Where the images come from:
            - `"auto"`: the public archives, from the Keras cache or
              downloaded; without network, logs one warning and falls back
              to `"synthetic"`.
            - `"real"`: the public archives; fails without network.
            - `"synthetic"`: images drawn by `make_synthetic`.
            - a folder holding either the two zip archives or the two
              folders they extract to (`horse-or-human/` and
              `validation-horse-or-human/`), or a pair of paths (training,
              validation), each a zip archive or a folder with `horses/`
              and `humans/`.
        cache_dir: Folder for downloads and extracted or drawn images;
            defaults to `$KERAS_HOME/datasets` (`~/.keras/datasets`).
        train_archive: The training archive to download.
        validation_archive: The validation archive to download.
        synthetic_seed: Seed of the synthetic images.
        synthetic_size: Side of the synthetic images, in pixels.
        verbose: Whether to show download progress.

    Returns:
        The `Folders` with the training and validation images.

    Raises:
        DataError: Bad data (wrong checksum, damaged archive, missing or
            empty class folder, unreadable image), named with its path.
        FileNotFoundError: A given path does not exist.

    Example:

    >>> folders = get_folders("synthetic")
    >>> folders.source
    'synthetic'
    """
    archives = (train_archive, validation_archive)
    if isinstance(data, str) and data in ("auto", "real"):
        try:
            return _real(archives, cache_dir, verbose)
        except Exception as error:
            cause = network_error(error)
            if data == "real" or cause is None:
                raise
            _LOG.warning(
                "Offline: could not download %s (%s). Using the built-in "
                "synthetic horse-or-human images instead (drawn shapes, not the "
                "real photos); pass `--data PATH` to use archives on disk.",
                train_archive.url,
                getattr(cause, "reason", cause),
            )
    if isinstance(data, str) and data in ("auto", "synthetic"):
        return make_synthetic(
            cache_dir=cache_dir, seed=synthetic_seed, image_size=synthetic_size
        )
    return _on_disk(data, archives, cache_dir)


def _real(archives: Sequence[Archive], cache_dir: Any, verbose: bool) -> Folders:
    train, validation = (
        extract(download(a, cache_dir, verbose=verbose), cache_dir, sha256=a.sha256)
        for a in archives
    )
    return Folders(train, validation, "real", " and ".join(a.url for a in archives))


def _on_disk(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    archives: Sequence[Archive],
    cache_dir: Any,
) -> Folders:
    if isinstance(data, str | os.PathLike):
        paths = _pair_in(Path(data), archives)
    else:
        paths = [Path(p) for p in data]
        if len(paths) != 2:
            raise ValueError(
                "Give the training and validation data as two paths; received "
                f"{len(paths)}: {[str(p) for p in paths]}."
            )
    train, validation = (_folder_of(path, cache_dir) for path in paths)
    return Folders(train, validation, "path", " and ".join(str(p) for p in paths))


def _pair_in(folder: Path, archives: Sequence[Archive]) -> list[Path]:
    """Finds the two archives, or the two folders they extract to, in `folder`."""
    if not folder.exists():
        raise FileNotFoundError(f"No such file or folder: {folder}")
    for names in ([a.filename for a in archives], [a.stem for a in archives]):
        paths = [folder / name for name in names]
        if all(p.exists() for p in paths):
            return paths
    raise DataError(
        f"{folder} holds neither {' and '.join(a.filename for a in archives)} "
        f"nor the folders {' and '.join(a.stem + '/' for a in archives)}."
    )


def _folder_of(path: Path, cache_dir: Any) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: {path}")
    if path.is_dir():
        check_folder(path, str(path))
        return path
    return extract(path, cache_dir)


def read_images(
    directory: str | os.PathLike[str], image_size: int | tuple[int, int] = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Reads the images of `horses/` and `humans/` into memory.

    Images are read in sorted order, converted to RGB and resized
    (bilinear) to `image_size`.

    Args:
        directory: Folder holding `horses/` and `humans/`.
        image_size: Size to resize to: an int for square images, or
            `(height, width)`.

    Returns:
        A tuple `(images, labels)`: `uint8` images of shape
        `(n, height, width, 3)` and `int32` labels of shape `(n,)`,
        0 for horses and 1 for humans.

    Raises:
        DataError: A class folder is missing or empty, or an image is
            unreadable or neither RGB nor RGBA.

    Example:

    >>> images, labels = read_images(get_folders("synthetic").train, 32)
    >>> images.shape
    (1027, 32, 32, 3)
    """
    directory = Path(directory)
    check_folder(directory, str(directory))
    height, width = (
        (image_size, image_size) if isinstance(image_size, int) else image_size
    )
    paths = [image_files(directory / name) for name in CLASS_NAMES]
    resample = pillow().Image.Resampling.BILINEAR

    def read(path: Path) -> np.ndarray:
        image = open_rgb(path)
        if image.size != (width, height):
            image = image.resize((width, height), resample)
        return np.asarray(image)

    images = np.stack(parallel_map(read, [p for files in paths for p in files]))
    labels = np.repeat(
        np.arange(len(CLASS_NAMES), dtype="int32"), [len(f) for f in paths]
    )
    return images, labels


class Batches(keras.utils.PyDataset):
    """Batches of images in memory, rescaled to [0, 1], for `fit`.

    Every batch is a pure function of its index, so two `fit` calls on the
    same `Batches` see the same batches in the same order, whatever the
    backend prefetches.

    Args:
        images: `uint8` images, `(n, height, width, channels)`.
        labels: Labels, `(n,)`; batches give them as `float32` `(size, 1)`.
        batch_size: Images per batch.
        shuffle: If `False`, one pass in order (the last batch may be
            smaller). If `True`, an endless stream of passes, each in a new
            order drawn from `seed` and the pass number; batches run across
            passes, so every batch is full. Give `fit` a `steps_per_epoch`.
        seed: Seed of the order when `shuffle=True`.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset`.

    Example:

    >>> images = np.zeros((10, 8, 8, 3), "uint8")
    >>> labels = np.arange(10) % 2
    >>> x, y = Batches(images, labels, batch_size=4, shuffle=True)[0]
    >>> x.shape, y.shape
    ((4, 8, 8, 3), (4, 1))
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(images) != len(labels) or not len(images):
            raise ValueError(
                "`images` and `labels` must be non-empty and of the same length; "
                f"received {len(images)} images and {len(labels)} labels."
            )
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive; received {batch_size}.")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    @property
    def num_batches(self) -> int | None:
        if self.shuffle:
            return None
        return math.ceil(len(self.images) / self.batch_size)

    def indices(self, index: int) -> np.ndarray:
        """Returns the positions in `images` of batch `index`'s images."""
        n = len(self.images)
        start = index * self.batch_size
        if not self.shuffle:
            if not 0 <= start < n:
                raise IndexError(f"Batch {index} is out of range.")
            return np.arange(start, min(start + self.batch_size, n))
        positions = np.arange(start, start + self.batch_size)
        passes = positions // n
        order = {p: self._order(p) for p in np.unique(passes)}
        return np.array(
            [order[p][i] for p, i in zip(passes, positions % n, strict=True)]
        )

    def _order(self, pass_number: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(pass_number)])
        return rng.permutation(len(self.images))

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        indices = self.indices(index)
        x = self.images[indices].astype("float32") / 255.0
        y = self.labels[indices].astype("float32")[:, None]
        return x, y
