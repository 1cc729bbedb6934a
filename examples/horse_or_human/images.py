"""The class folders and their images: names, counts, checks, decoding."""

import concurrent.futures
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

CLASS_NAMES = ("horses", "humans")
"""Class folders; a class's label is its index, as in Keras' alphabetical order."""

COUNTS = {
    "train": {"horses": 500, "humans": 527},
    "validation": {"horses": 128, "humans": 128},
}
"""Images per split and class in the public archives."""

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Renders are saved with or without an alpha channel; anything else (grey,
# palette, 16-bit, CMYK) is not this dataset.
_IMAGE_MODES = ("RGB", "RGBA")
# `get_file` downloads with `urlretrieve`, which has no timeout of its own.


class DataError(ValueError):
    """Raised when the horse-or-human data is damaged or incomplete."""


@dataclasses.dataclass(frozen=True)
class Folders:
    """Where the training and validation images are, and what they are.

    Attributes:
        train: Folder holding `horses/` and `humans/` for training.
        validation: The same for validation.
        source: `"real"` (the public archives, checksums verified), `"path"`
            (data given on disk, not verified against the public archives) or
            `"synthetic"` (drawn by `make_synthetic`).
        origin: The URLs, paths or seed the images came from.
    """

    train: Path
    validation: Path
    source: str
    origin: str


def image_files(folder: Path) -> list[Path]:
    """Returns the image files directly in `folder`, sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
    )


def check_folder(root: Path, what: str, *, decode: bool = False) -> None:
    """Checks that `root` holds non-empty class folders (and readable images)."""
    for name in CLASS_NAMES:
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"{what} has no `{name}/` folder.")
        files = image_files(folder)
        if not files:
            raise DataError(f"{what}: `{name}/` holds no images ({folder}).")
        if decode:
            parallel_map(open_rgb, files)


def parallel_map(function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """`map` over threads: Pillow releases the GIL while it decodes and encodes."""
    with concurrent.futures.ThreadPoolExecutor() as pool:
        return list(pool.map(function, items))


def pillow() -> Any:
    """Imports Pillow, an optional dependency, or says how to install it."""
    try:
        import PIL.Image
        import PIL.ImageDraw
    except ImportError:
        raise ImportError(
            "Reading and drawing horse-or-human images needs Pillow: "
            "`pip install pillow` (or `pip install keras-gc[examples]`)."
        ) from None
    return PIL


def open_rgb(path: Path) -> "Image.Image":
    """Decodes an image fully and returns it as RGB, or says what is wrong."""
    try:
        image = pillow().Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path} is not a readable image: {error}") from None
    with image:
        if image.mode not in _IMAGE_MODES:
            raise DataError(
                f"{path} has image mode {image.mode!r}; expected "
                f"{' or '.join(_IMAGE_MODES)}. Convert it, e.g. with Pillow's "
                "`Image.open(path).convert('RGB').save(path)`."
            )
        return image.convert("RGB")
