"""The horse-or-human dataset and the classic recipe that trains on it.

Laurence Moroney's horse-or-human set (CC BY 2.0) holds 300x300 renders of
horses and humans: 1027 training and 256 validation images in two public zip
archives. This module finds them (Keras cache, download, or a path on disk),
checks them, draws a synthetic stand-in when there is no network, reads the
images into a `keras.utils.PyDataset` with Pillow and NumPy only, and builds
the classic model with its augmentation as Keras preprocessing layers, so the
whole pipeline runs on every backend without TensorFlow.

>>> folders = get_folders("synthetic")
>>> images, labels = read_images(folders.train, image_size=64)
>>> train = Batches(images, labels, batch_size=128, shuffle=True, seed=0)
>>> model = build_model(image_size=64)
"""

import concurrent.futures
import dataclasses
import hashlib
import logging
import math
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:
    from PIL import Image

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

_LOG = logging.getLogger(__name__)

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
_CHUNK = 1 << 20
# What a failed download raises; data errors are not among them.
_NETWORK_ERRORS = (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError)
# Bump when `make_synthetic` draws differently, so old caches are not reused.
_SYNTHETIC_VERSION = 1


class DataError(ValueError):
    """Raised when the horse-or-human data is damaged or incomplete."""


@dataclasses.dataclass(frozen=True)
class Archive:
    """A zip archive to download, with the size and SHA-256 it must have.

    Attributes:
        url: Where to download it from (`https://`, `file://`, ...).
        size: Its size in bytes.
        sha256: Its SHA-256, as 64 hex digits.
    """

    url: str
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        """The archive's file name, the last part of its URL."""
        return Path(urllib.parse.urlparse(self.url).path).name

    @property
    def stem(self) -> str:
        """The file name without `.zip`; also the extracted folder's name."""
        return Path(self.filename).stem


TRAIN_ARCHIVE = Archive(
    "https://storage.googleapis.com/download.tensorflow.org/data/horse-or-human.zip",
    149574867,
    "e2e6f70d3d549c5dd10a57165e55af253ee66ad750403f95c0fb76bb943633a9",
)
VALIDATION_ARCHIVE = Archive(
    "https://storage.googleapis.com/download.tensorflow.org/data/"
    "validation-horse-or-human.zip",
    11480187,
    "ae5fff2f4f5554791f05358108e2e05d9801b191f1896ea101402f0e7f6c32c0",
)


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


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """Returns (and creates) the cache, chosen as `keras.utils.get_file` does."""
    if cache_dir is None:
        home = os.environ.get("KERAS_HOME")
        if home is None:
            base = Path.home()
            if not os.access(base, os.W_OK):
                base = Path(tempfile.gettempdir())
            home = str(base / ".keras")
        cache_dir = Path(home) / "datasets"
    path = Path(cache_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, archive: Archive) -> str | None:
    """Says how `path` differs from `archive`'s size and SHA-256, if it does."""
    size = path.stat().st_size
    sha256 = _sha256(path) if size == archive.size else None
    if sha256 == archive.sha256:
        return None
    return (
        f"expected {archive.size} bytes with SHA-256 {archive.sha256}, got "
        f"{size} bytes" + (f" with SHA-256 {sha256}" if sha256 else "")
    )


def download(
    archive: Archive,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    verbose: bool = True,
) -> Path:
    """Returns the path of a verified copy of `archive` in the cache.

    A copy already in the cache is checked and used. Otherwise the archive is
    downloaded to a temporary file beside the cache, checked, and only then
    moved into place, so the cache never holds a partial or wrong file.

    Args:
        archive: The `Archive` to fetch.
        cache_dir: Folder to keep it in; defaults to `$KERAS_HOME/datasets`
            (`~/.keras/datasets`), as `keras.utils.get_file` does.
        verbose: Whether to show a progress bar while downloading.

    Returns:
        The path of the archive in the cache.

    Raises:
        DataError: The cached or downloaded file has the wrong size or
            SHA-256.
        urllib.error.URLError: The URL could not be reached (also `OSError`
            or `http.client.HTTPException` for broken connections).

    Example:

    >>> path = download(VALIDATION_ARCHIVE)  # doctest: +SKIP
    """
    path = _cache_dir(cache_dir) / archive.filename
    if path.exists():
        problem = _mismatch(path, archive)
        if problem:
            raise DataError(
                f"The cached file {path} is not {archive.url}: {problem}. "
                "Delete it to download it again."
            )
        return path
    # Beside the cache, so that the final move is atomic; the pid keeps
    # concurrent downloads apart.
    part = path.with_name(f".{archive.filename}.{os.getpid()}.part")
    try:
        with (
            urllib.request.urlopen(archive.url, timeout=30) as response,
            part.open("wb") as file,
        ):
            _copy(response, file, archive, verbose)
        problem = _mismatch(part, archive)
        if problem:
            raise DataError(
                f"The download of {archive.url} is damaged or not the expected "
                f"file: {problem}. It was not kept."
            )
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def _copy(response: Any, file: Any, archive: Archive, verbose: bool) -> None:
    """Copies the response into the file, stopping early if it is too long."""
    progress = keras.utils.Progbar(archive.size) if verbose else None
    received = 0
    while chunk := response.read(_CHUNK):
        received += len(chunk)
        if received > archive.size:
            raise DataError(
                f"The download of {archive.url} is longer than the expected "
                f"{archive.size} bytes."
            )
        file.write(chunk)
        if progress is not None:
            progress.update(received)


def extract(
    zip_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    sha256: str | None = None,
) -> Path:
    """Extracts and checks a horse-or-human zip archive, once.

    The archive is tested member by member, extracted into a temporary
    folder, checked (`horses/` and `humans/` present, not empty, every image
    readable and RGB or RGBA), and only then renamed into the cache. An
    archive extracted before is not extracted again.

    Args:
        zip_path: The zip archive.
        cache_dir: Folder to extract into; defaults to the Keras cache.
        sha256: The archive's SHA-256, if known (it names the folder, so that
            different archives with the same name never share one).

    Returns:
        The folder that holds `horses/` and `humans/`.

    Raises:
        DataError: The archive is truncated or corrupt, lacks a class folder,
            or holds an empty class folder or a bad image.
    """
    zip_path = Path(zip_path)
    sha256 = sha256 or _sha256(zip_path)
    folder = _cache_dir(cache_dir) / f"{zip_path.stem}-{sha256[:12]}"
    if folder.exists():
        return folder
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        root = _unzip(zip_path, work)
        _check_folder(root, f"{zip_path} (extracted to {root})", decode=True)
        # The class folders may sit under one top folder; keep only their root.
        os.replace(root, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _unzip(zip_path: Path, work: Path) -> Path:
    """Extracts the archive into `work` and returns the folder of the classes."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise DataError(f"{zip_path} is corrupt: member {bad!r} is damaged.")
            names = [n for n in archive.namelist() if not n.startswith("__MACOSX/")]
            archive.extractall(work, members=names)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataError(
            f"{zip_path} is not a readable zip archive (truncated or corrupt: {error})."
        ) from None
    for root in (work, *sorted(p for p in work.iterdir() if p.is_dir())):
        if any((root / name).is_dir() for name in CLASS_NAMES):
            return root
    return work


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
    )


def _check_folder(root: Path, what: str, *, decode: bool = False) -> None:
    """Checks that `root` holds non-empty class folders (and readable images)."""
    for name in CLASS_NAMES:
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"{what} has no `{name}/` folder.")
        files = _image_files(folder)
        if not files:
            raise DataError(f"{what}: `{name}/` holds no images ({folder}).")
        if decode:
            _map(_open_rgb, files)


def _map(function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    # Pillow releases the GIL while it decodes and encodes, so threads help.
    with concurrent.futures.ThreadPoolExecutor() as pool:
        return list(pool.map(function, items))


def _pillow() -> Any:
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


def _open_rgb(path: Path) -> "Image.Image":
    """Decodes an image fully and returns it as RGB, or says what is wrong."""
    try:
        image = _pillow().Image.open(path)
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


def get_folders(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = "auto",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    train_archive: Archive = TRAIN_ARCHIVE,
    validation_archive: Archive = VALIDATION_ARCHIVE,
    synthetic_seed: int = 0,
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
        except _NETWORK_ERRORS as error:
            if data == "real":
                raise
            _LOG.warning(
                "Offline: could not download %s (%s). Using the built-in "
                "synthetic horse-or-human images instead (drawn shapes, not the "
                "real photos); pass `--data PATH` to use archives on disk.",
                train_archive.url,
                getattr(error, "reason", error),
            )
    if isinstance(data, str) and data in ("auto", "synthetic"):
        return make_synthetic(cache_dir=cache_dir, seed=synthetic_seed)
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
        _check_folder(path, str(path))
        return path
    return extract(path, cache_dir)


def make_synthetic(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    image_size: int = 300,
    counts: Mapping[str, Mapping[str, int]] = COUNTS,
) -> Folders:
    """Draws a synthetic stand-in for horse-or-human, once per seed.

    Each image is a two-tone background (sky and ground) with one figure: a
    horse (a wide body on four legs, with a neck and a head) or a human (an
    upright body with a round head, arms and legs), in random colours, sizes,
    places and facing. The folders, names and counts match the real set.
    The images depend only on the seed and are kept in the cache.

    Args:
        cache_dir: Folder to keep them in; defaults to the Keras cache.
        seed: The images' seed.
        image_size: Side of the square images, in pixels.
        counts: Images per split (`"train"`, `"validation"`) and class.

    Returns:
        The `Folders` with `source="synthetic"`.

    Example:

    >>> folders = make_synthetic(seed=1, image_size=32,
    ...                          counts={"train": {"horses": 2, "humans": 2},
    ...                                  "validation": {"horses": 1, "humans": 1}})
    """
    key = hashlib.sha256(
        repr((_SYNTHETIC_VERSION, seed, image_size, dict(counts))).encode()
    ).hexdigest()[:12]
    root = _cache_dir(cache_dir) / f"horse-or-human-synthetic-{key}"
    splits = {"train": "horse-or-human", "validation": "validation-horse-or-human"}
    if not root.exists():
        work = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
        try:
            jobs = []
            for part, (split, folder) in enumerate(splits.items()):
                for label, name in enumerate(CLASS_NAMES):
                    (work / folder / name).mkdir(parents=True)
                    jobs += [
                        (
                            work / folder / name / f"{name[:-1]}{i:04d}.png",
                            part,
                            label,
                            i,
                        )
                        for i in range(counts[split][name])
                    ]
            _map(lambda job: _draw(*job, seed=seed, size=image_size), jobs)
            os.replace(work, root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    train, validation = (root / folder for folder in splits.values())
    return Folders(train, validation, "synthetic", f"make_synthetic(seed={seed})")


def _draw(
    path: Path, part: int, label: int, index: int, *, seed: int, size: int
) -> None:
    """Draws one image, from a generator keyed by its seed, split, class, index."""
    pil = _pillow()
    rng = np.random.default_rng([seed, part, label, index])
    sky, ground = rng.integers(0, 256, (2, 3))
    horizon = int(size * rng.uniform(0.55, 0.8))
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:horizon], pixels[horizon:] = sky, ground
    image = pil.Image.fromarray(pixels)
    figure = _horse if label == 0 else _human
    figure(pil.ImageDraw.Draw(image), rng, size, horizon)
    # Fast rather than small: the images are drawn again rather than shipped.
    image.save(path, compress_level=1)


def _colour(rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _horse(draw: Any, rng: np.random.Generator, size: int, horizon: int) -> None:
    s = size * rng.uniform(0.5, 0.9)
    x, y = size * rng.uniform(0.3, 0.7), horizon - s * rng.uniform(0.25, 0.35)
    facing = rng.choice([-1, 1])
    colour = _colour(rng)
    body = (x - s / 3, y - s / 9, x + s / 3, y + s / 9)
    draw.ellipse(body, fill=colour)
    for dx in (-0.28, -0.18, 0.18, 0.28):
        leg_x = x + dx * s
        draw.rectangle((leg_x - s / 40, y, leg_x + s / 40, y + s * 0.3), fill=colour)
    neck_x = x + facing * s * 0.3
    head_x, head_y = x + facing * s * 0.42, y - s * 0.2
    draw.line((neck_x, y, head_x, head_y), fill=colour, width=max(1, int(s / 12)))
    draw.ellipse(
        (head_x - s / 12, head_y - s / 20, head_x + s / 12, head_y + s / 20),
        fill=colour,
    )
    tail_x = x - facing * s * 0.33
    draw.line((tail_x, y, tail_x - facing * s / 10, y + s / 5), fill=colour, width=3)


def _human(draw: Any, rng: np.random.Generator, size: int, horizon: int) -> None:
    s = size * rng.uniform(0.4, 0.75)
    x, feet = size * rng.uniform(0.3, 0.7), horizon + size * rng.uniform(0, 0.1)
    skin, clothes = _colour(rng), _colour(rng)
    hips, shoulders = feet - s * 0.45, feet - s * 0.8
    width = max(1, int(s / 14))
    for dx in (-1, 1):
        draw.line((x, hips, x + dx * s / 10, feet), fill=clothes, width=width)
        arm = rng.uniform(0.1, 0.3)
        draw.line(
            (x, shoulders, x + dx * s * arm, shoulders + s * 0.3),
            fill=skin,
            width=width,
        )
    draw.rectangle((x - s / 12, shoulders, x + s / 12, hips), fill=clothes)
    draw.ellipse((x - s / 14, shoulders - s / 6, x + s / 14, shoulders), fill=skin)


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
    _check_folder(directory, str(directory))
    height, width = (
        (image_size, image_size) if isinstance(image_size, int) else image_size
    )
    paths = [_image_files(directory / name) for name in CLASS_NAMES]
    resample = _pillow().Image.Resampling.BILINEAR

    def read(path: Path) -> np.ndarray:
        image = _open_rgb(path)
        if image.size != (width, height):
            image = image.resize((width, height), resample)
        return np.asarray(image)

    images = np.stack(_map(read, [p for files in paths for p in files]))
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


def augmentation() -> keras.Sequential:
    """Builds the classic recipe's random augmentation, as Keras layers.

    The recipe's `ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
    height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
    horizontal_flip=True, fill_mode="nearest")`, one layer per transform.
    Its `shear_range` is an angle in degrees, so 0.2 is a shear factor of
    tan(0.2 deg), about 0.0035; its zoom scales height and width separately.
    Pixels are sampled from the nearest source pixel (the recipe used
    bilinear): bilinear sampling is up to 20 times slower on the JAX and
    PyTorch CPU backends. The layers act only in training, on the backend's
    device.

    Returns:
        A `keras.Sequential` named `"augmentation"`.

    Example:

    >>> images = np.random.uniform(size=(2, 32, 32, 3))
    >>> tuple(augmentation()(images, training=True).shape)
    (2, 32, 32, 3)
    """
    fill = {"fill_mode": "nearest", "interpolation": "nearest"}
    return keras.Sequential(
        [
            keras.layers.RandomRotation(40 / 360, **fill),
            keras.layers.RandomTranslation(0.2, 0.2, **fill),
            keras.layers.RandomShear(x_factor=math.tan(math.radians(0.2)), **fill),
            keras.layers.RandomZoom(0.2, 0.2, **fill),
            keras.layers.RandomFlip("horizontal"),
        ],
        name="augmentation",
    )


def build_model(
    image_size: int | tuple[int, int] = 300, *, augment: bool = True
) -> keras.Sequential:
    """Builds the classic horse-or-human convolutional network.

    Conv2D(16) MaxPool | Conv2D(32) Dropout MaxPool | Conv2D(64) Dropout
    MaxPool | Flatten Dropout Dense(512) Dense(1, sigmoid), on RGB inputs in
    [0, 1], with `augmentation()` in front.

    Args:
        image_size: Input size: an int for square images, or
            `(height, width)`; at least 22 pixels.
        augment: Whether to put the random augmentation in front.

    Returns:
        An uncompiled `keras.Sequential` that outputs P(human).

    Example:

    >>> model = build_model(64)
    >>> model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    """
    height, width = (
        (image_size, image_size) if isinstance(image_size, int) else image_size
    )
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((height, width, 3)),
            *([augmentation()] if augment else []),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Dropout(0.5),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Dropout(0.5),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="horse_or_human",
    )
