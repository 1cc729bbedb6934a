"""Horse-or-human: the classic data and CNN, and a GC-versus-bare comparison.

Laurence Moroney's horse-or-human set (CC BY 2.0) holds 300x300 renders of
horses and humans: 1027 training and 256 validation images in two public zip
archives. This package finds them (Keras cache, download, or a path on disk),
checks them, draws a synthetic stand-in when there is no network, reads the
images into a `keras.utils.PyDataset` with Pillow and NumPy only, and builds
the classic model with its augmentation as Keras preprocessing layers, so the
whole pipeline runs on every backend without TensorFlow. The command,
`python -m examples.horse_or_human`, compares the model trained with and
without Gradient Centralization.

Modules: `archives` (download, verify, extract), `images` (class folders,
checks, decoding), `synthetic` (the offline stand-in), `data` (finding the
images, reading them, batches),
`model` (the CNN and its augmentation), `command` (the comparison).

>>> folders = get_folders("synthetic")
>>> images, labels = read_images(folders.train, image_size=64)
>>> train = Batches(images, labels, batch_size=128, shuffle=True, seed=0)
>>> model = build_model(image_size=64)
"""

from .archives import TRAIN_ARCHIVE, VALIDATION_ARCHIVE, Archive, download, extract
from .data import Batches, get_folders, read_images
from .images import CLASS_NAMES, COUNTS, DataError, Folders
from .model import augmentation, build_model
from .synthetic import make_synthetic

__all__ = [
    "CLASS_NAMES",
    "COUNTS",
    "TRAIN_ARCHIVE",
    "VALIDATION_ARCHIVE",
    "Archive",
    "Batches",
    "DataError",
    "Folders",
    "augmentation",
    "build_model",
    "download",
    "extract",
    "get_folders",
    "make_synthetic",
    "read_images",
]
