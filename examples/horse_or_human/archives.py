"""The public horse-or-human archives: download, verify, extract, check.

`download` fetches an archive with `keras.utils.get_file` and its SHA-256,
and wraps it so that a bad download never stays in the cache. `extract`
unpacks an archive (downloaded or given on disk) once, checks every image,
and only then moves the folder into the cache.
"""

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path

import keras

from .images import CLASS_NAMES, DataError, check_folder

# `get_file` downloads with `urlretrieve`, which has no timeout of its own.
_TIMEOUT_SECONDS = 30
# What a failed download raises; data errors are not among them.
NETWORK_ERRORS = (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError)


@dataclasses.dataclass(frozen=True)
class Archive:
    """A zip archive to download, with the size and SHA-256 it must have.

    Attributes:
        url: Where to download it from (`https://`, `http://`, `file://`).
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


def cache_folder(cache_dir: str | os.PathLike[str] | None) -> Path:
    """Returns (and creates) the cache: `cache_dir`, or `$KERAS_HOME/datasets`
    (`~/.keras/datasets`) when it is `None`, as `keras.utils.get_file` does."""
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


def sha256_of(path: Path) -> str:
    """Returns the SHA-256 of a file, as 64 hex digits."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, archive: Archive) -> str | None:
    """Says how `path` differs from `archive`'s size and SHA-256, if it does."""
    size = path.stat().st_size
    sha256 = None
    if size == archive.size:
        sha256 = sha256_of(path)
    if sha256 == archive.sha256:
        return None
    if size > archive.size:
        return f"it is longer than the expected {archive.size} bytes ({size} bytes)"
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

    A copy already in the cache is checked and used. Otherwise
    `keras.utils.get_file` downloads the archive and checks its SHA-256, into
    a temporary folder beside the cache; the archive is moved into place only
    once its size and SHA-256 are right. So the cache never holds a partial or
    wrong file, even when the download is cut or the process killed
    (`get_file` alone keeps a file whose hash is wrong, and writes straight to
    its final name).

    Args:
        archive: The `Archive` to fetch.
        cache_dir: Folder to keep it in; defaults to `$KERAS_HOME/datasets`
            (`~/.keras/datasets`), as `keras.utils.get_file` does.
        verbose: Whether to show `get_file`'s progress bar.

    Returns:
        The path of the archive in the cache.

    Raises:
        DataError: The cached or downloaded file has the wrong size or
            SHA-256, or the download stopped short.
        urllib.error.URLError: The URL could not be reached (also `OSError`
            or `http.client.HTTPException` for broken connections).

    Example:

    >>> path = download(VALIDATION_ARCHIVE)  # doctest: +SKIP
    """
    cache = cache_folder(cache_dir)
    path = cache / archive.filename
    if path.exists():
        problem = _mismatch(path, archive)
        if problem:
            raise DataError(
                f"The cached file {path} is not {archive.url}: {problem}. "
                "Delete it to download it again."
            )
        return path
    # Beside the cache, so that the final move is atomic.
    part = Path(tempfile.mkdtemp(dir=cache, prefix=f".{archive.filename}."))
    try:
        fetched = _get_file(archive, cache, part.name, verbose)
        problem = _mismatch(fetched, archive)
        if problem:
            raise DataError(
                f"The download of {archive.url} is damaged or not the expected "
                f"file: {problem}. It was not kept."
            )
        os.replace(fetched, path)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return path


def _get_file(archive: Archive, cache: Path, subdir: str, verbose: bool) -> Path:
    """Downloads with `keras.utils.get_file`, turning its errors into ours."""
    output = (
        contextlib.nullcontext()
        if verbose
        else contextlib.redirect_stdout(io.StringIO())
    )
    try:
        with output, _socket_timeout(_TIMEOUT_SECONDS):
            return Path(
                keras.utils.get_file(
                    archive.filename,
                    archive.url,
                    file_hash=archive.sha256,
                    hash_algorithm="sha256",
                    cache_dir=str(cache),
                    cache_subdir=subdir,
                )
            )
    except ValueError as error:
        # `get_file` raises a plain ValueError for a wrong hash and keeps the file.
        fetched = cache / subdir / archive.filename
        problem = _mismatch(fetched, archive) if fetched.exists() else str(error)
        raise DataError(
            f"The download of {archive.url} is damaged or not the expected "
            f"file: {problem}. It was not kept."
        ) from None
    except Exception as error:
        cause = network_error(error)
        if isinstance(cause, urllib.error.ContentTooShortError):
            raise DataError(
                f"The download of {archive.url} stopped early ({cause.reason}). "
                "It was not kept; try again."
            ) from None
        if cause is not None:
            raise cause from None
        raise


def network_error(error: BaseException) -> BaseException | None:
    """Returns the network error behind `error`, if there is one.

    `get_file` re-raises a failed URL as a bare `Exception` whose context is
    the original `urllib.error.URLError`.
    """
    for candidate in (error, error.__context__):
        if isinstance(candidate, NETWORK_ERRORS):
            return candidate
    return None


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


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
    archive extracted before is not extracted again. (`get_file(extract=True)`
    would extract again at every call and keep a half-extracted folder when a
    member is corrupt, and archives given on disk need the same checks.)

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
    sha256 = sha256 or sha256_of(zip_path)
    folder = cache_folder(cache_dir) / f"{zip_path.stem}-{sha256[:12]}"
    if folder.exists():
        return folder
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        root = _unzip(zip_path, work)
        check_folder(root, f"{zip_path} (extracted to {root})", decode=True)
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
