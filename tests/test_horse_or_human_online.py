"""The online path of `python -m examples.horse_or_human`, without the internet.

The test builds two small archives and serves them over HTTP from 127.0.0.1;
the command downloads them with `keras.utils.get_file`, verifies, extracts
and trains on them, as it does with the public URLs. A wrong checksum and a
cut download must stop with a clear error and leave the cache empty.
"""

import functools
import hashlib
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples import horse_or_human as hoh
from examples.horse_or_human import command

# The server stops by itself after this long, whatever happens to the test.
SERVER_SECONDS = 120
SMALL = {
    "train": {"horses": 6, "humans": 6},
    "validation": {"horses": 2, "humans": 2},
}
TINY = [
    "--image-size", "32",
    "--epochs", "1",
    "--steps-per-epoch", "2",
    "--validation-steps", "1",
    "--batch-size", "8",
    "--validation-batch-size", "4",
    "--quiet",
]  # fmt: skip


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; under `/cut/` it promises a file's full length and
    sends half of it, as a dropped connection does."""

    def do_GET(self) -> None:
        if not self.path.startswith("/cut/"):
            super().do_GET()
            return
        data = (Path(self.directory) / self.path.removeprefix("/cut/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Two archives of synthetic images, served on a free port of 127.0.0.1.

    Yields the base URL and the folder served.
    """
    root = tmp_path_factory.mktemp("served")
    folders = hoh.make_synthetic(root / "drawn", image_size=32, counts=SMALL)
    for folder in (folders.train, folders.validation):
        with zipfile.ZipFile(root / f"{folder.name}.zip", "w") as archive:
            for image in sorted(folder.rglob("*.png")):
                archive.write(image, image.relative_to(folder.parent))
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    timer = threading.Timer(SERVER_SECONDS, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        timer.cancel()
        server.shutdown()
        server.server_close()


def _archive(base: str, root: Path, name: str, prefix: str = "") -> hoh.Archive:
    data = (root / name).read_bytes()
    return hoh.Archive(
        f"{base}/{prefix}{name}", len(data), hashlib.sha256(data).hexdigest()
    )


def _archives(served: tuple[str, Path]) -> tuple[hoh.Archive, hoh.Archive]:
    base, root = served
    return (
        _archive(base, root, "horse-or-human.zip"),
        _archive(base, root, "validation-horse-or-human.zip"),
    )


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home" / "datasets"


def test_command_downloads_verifies_extracts_and_trains(served, keras_home, tmp_path):
    output = tmp_path / "out"
    options = ["--data", "auto", *TINY, "--no-plot", "--output", str(output)]
    assert command.main(options, archives=_archives(served)) == 0
    data = json.loads((output / "results.json").read_text())
    assert data["metadata"]["data"]["source"] == "real"
    assert data["metadata"]["data"]["origin"].startswith("http://127.0.0.1:")
    assert data["metadata"]["data"]["train_images"] == 12
    assert data["metadata"]["data"]["validation_images"] == 4
    assert [len(run["history"]["loss"]) for run in data["runs"]] == [1, 1]
    # The archives, as served, and their checked extractions are cached,
    # and nothing else.
    _, root = served
    expected = set()
    for archive in _archives(served):
        cached = keras_home / archive.filename
        assert cached.read_bytes() == (root / archive.filename).read_bytes()
        expected |= {archive.filename, f"{archive.stem}-{archive.sha256[:12]}"}
    assert {p.name for p in keras_home.iterdir()} == expected


def test_wrong_checksum_stops_and_keeps_nothing(served, keras_home, tmp_path):
    train, validation = _archives(served)
    wrong = hoh.Archive(train.url, train.size, "0" * 64)
    with pytest.raises(hoh.DataError) as error:
        options = ["--data", "real", *TINY, "--output", str(tmp_path / "out")]
        command.main(options, archives=(wrong, validation))
    message = str(error.value)
    assert train.url in message and "0" * 64 in message and train.sha256 in message
    assert "not kept" in message
    assert list(keras_home.iterdir()) == []


def test_cut_download_stops_and_keeps_nothing(served, keras_home, tmp_path):
    base, root = served
    train, validation = _archives(served)
    cut = _archive(base, root, "horse-or-human.zip", prefix="cut/")
    with pytest.raises(hoh.DataError, match="stopped early") as error:
        # `auto` would fall back to synthetic data if this were a network error.
        options = ["--data", "auto", *TINY, "--output", str(tmp_path / "out")]
        command.main(options, archives=(cut, validation))
    assert cut.url in str(error.value)
    assert f"out of {train.size} bytes" in str(error.value)
    assert list(keras_home.iterdir()) == []
