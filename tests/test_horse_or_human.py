"""The horse-or-human data: archives, checks, synthetic images, batches, model.

The real-data path runs on small archives built here and served from
`file://` URLs; each kind of bad data must fail with its path named and leave
nothing half-written in the cache.
"""

import hashlib
import io
import logging
import urllib.error
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from examples import horse_or_human as hoh

SMALL = {
    "train": {"horses": 3, "humans": 2},
    "validation": {"horses": 1, "humans": 2},
}


def _png(mode: str = "RGB", size: int = 12, value: int = 0) -> bytes:
    buffer = io.BytesIO()
    colour = value if mode in ("L", "P") else (value,) * len(mode)
    Image.new(mode, (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes | None]) -> Path:
    """Writes a zip; a `None` member is a folder entry."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            if data is None:
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(name, data)
    return path


def _archive(path: Path) -> hoh.Archive:
    data = path.read_bytes()
    return hoh.Archive(path.as_uri(), len(data), hashlib.sha256(data).hexdigest())


def _members(counts: dict[str, int], prefix: str = "") -> dict[str, bytes | None]:
    return {
        f"{prefix}{name}/{name[:-1]}{i:02d}.png": _png(value=40 * i + 100 * label)
        for label, name in enumerate(hoh.CLASS_NAMES)
        for i in range(counts[name])
    }


@pytest.fixture
def archives(tmp_path: Path) -> tuple[hoh.Archive, hoh.Archive]:
    """A good pair of small archives (the validation one under a top folder)."""
    served = tmp_path / "served"
    served.mkdir()
    train = _zip(served / "horse-or-human.zip", _members(SMALL["train"]))
    validation = _zip(
        served / "validation-horse-or-human.zip",
        _members(SMALL["validation"], prefix="validation-horse-or-human/"),
    )
    return _archive(train), _archive(validation)


def _leftovers(cache: Path) -> list[str]:
    """Everything in the cache but verified archives."""
    return sorted(p.name for p in cache.iterdir() if p.suffix != ".zip")


def test_real_data_downloads_verifies_extracts_and_caches(archives, tmp_path):
    cache = tmp_path / "cache"
    folders = hoh.get_folders(
        "auto",
        cache_dir=cache,
        train_archive=archives[0],
        validation_archive=archives[1],
        verbose=False,
    )
    assert folders.source == "real"
    assert (cache / "horse-or-human.zip").read_bytes() == Path(
        archives[0].url.removeprefix("file://")
    ).read_bytes()
    images, labels = hoh.read_images(folders.train, 8)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1])
    _, labels = hoh.read_images(folders.validation, (6, 4))
    np.testing.assert_array_equal(labels, [0, 1, 1])

    # Served files gone: the cache alone answers, and nothing else is left.
    for archive in archives:
        Path(archive.url.removeprefix("file://")).unlink()
    again = hoh.get_folders(
        "real",
        cache_dir=cache,
        train_archive=archives[0],
        validation_archive=archives[1],
        verbose=False,
    )
    assert again == folders
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]


def test_offline_says_so_once_and_draws_synthetic(tmp_path, synthetic_cache, caplog):
    missing = hoh.Archive((tmp_path / "absent.zip").as_uri(), 1, "0" * 64)
    with caplog.at_level(logging.WARNING):
        folders = hoh.get_folders(
            "auto", cache_dir=synthetic_cache, train_archive=missing, verbose=False
        )
    assert folders.source == "synthetic"
    offline = [r for r in caplog.records if "Offline" in r.getMessage()]
    assert len(offline) == 1 and "absent.zip" in offline[0].getMessage()
    with pytest.raises(urllib.error.URLError):
        hoh.get_folders("real", cache_dir=tmp_path, train_archive=missing)


@pytest.mark.parametrize("change", ["sha256", "size"])
def test_wrong_checksum_or_size_keeps_nothing(archives, tmp_path, change):
    good = archives[0]
    bad = hoh.Archive(
        good.url,
        good.size + (change == "size"),
        "f" * 64 if change == "sha256" else good.sha256,
    )
    cache = tmp_path / "cache"
    with pytest.raises(hoh.DataError, match=r"horse-or-human.zip.*expected") as error:
        hoh.download(bad, cache, verbose=False)
    assert "not kept" in str(error.value)
    assert list(cache.iterdir()) == []


def test_longer_download_than_expected_is_cut_off(archives, tmp_path):
    short = hoh.Archive(archives[0].url, 100, archives[0].sha256)
    with pytest.raises(hoh.DataError, match="longer than the expected 100 bytes"):
        hoh.download(short, tmp_path / "cache", verbose=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_wrong_cached_file_is_named(archives, tmp_path):
    (tmp_path / "horse-or-human.zip").write_bytes(b"not the archive")
    with pytest.raises(hoh.DataError, match=r"cached file .*horse-or-human.zip"):
        hoh.download(archives[0], tmp_path, verbose=False)


def _bad_zip(path: Path, case: str) -> Path:
    if case == "truncated":
        _zip(path, _members(SMALL["train"]))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "corrupt member":
        members = _members(SMALL["train"])
        _zip(path, members)
        data = bytearray(path.read_bytes())
        first = next(iter(members.values()))
        assert first is not None
        start = data.index(first[:16])
        data[start + 40 : start + 48] = b"\xff" * 8
        path.write_bytes(bytes(data))
    elif case == "no humans":
        _zip(path, _members({"horses": 2, "humans": 0}))
    elif case == "empty humans":
        _zip(path, {**_members({"horses": 2, "humans": 0}), "humans/": None})
    elif case == "unreadable image":
        _zip(path, {**_members(SMALL["train"]), "humans/bad.png": b"\x89PNG broken"})
    elif case == "wrong mode":
        _zip(path, {**_members(SMALL["train"]), "humans/grey.png": _png("L")})
    return path


BAD_DATA = {
    "truncated": r"horse-or-human.zip is not a readable zip archive",
    "corrupt member": r"horse-or-human.zip is corrupt: member 'horses/horse00.png'",
    "no humans": r"horse-or-human.zip .* has no `humans/` folder",
    "empty humans": r"`humans/` holds no images",
    "unreadable image": r"humans/bad.png is not a readable image",
    "wrong mode": r"humans/grey.png has image mode 'L'; expected RGB or RGBA",
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_archive_is_named_and_leaves_no_extraction(tmp_path, case):
    served = tmp_path / "served"
    served.mkdir()
    archive = _archive(_bad_zip(served / "horse-or-human.zip", case))
    cache = tmp_path / "cache"
    with pytest.raises(hoh.DataError, match=BAD_DATA[case]):
        hoh.get_folders("auto", cache_dir=cache, train_archive=archive, verbose=False)
    assert _leftovers(cache) == []


@pytest.mark.parametrize("case", ["unreadable image", "wrong mode", "empty humans"])
def test_bad_folder_on_disk_is_named(tmp_path, case):
    with zipfile.ZipFile(_bad_zip(tmp_path / "bad.zip", case)) as archive:
        archive.extractall(tmp_path / "folder")
    (tmp_path / "folder" / "humans").mkdir(exist_ok=True)
    with pytest.raises(hoh.DataError, match=BAD_DATA[case]):
        hoh.read_images(tmp_path / "folder", 8)


def test_data_on_disk_as_folder_of_zips_folders_or_pair(archives, tmp_path):
    served = Path(archives[0].url.removeprefix("file://")).parent
    cache = tmp_path / "cache"
    from_zips = hoh.get_folders(served, cache_dir=cache)
    assert from_zips.source == "path"
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    for folder, name in zip(
        (from_zips.train, from_zips.validation),
        ("horse-or-human", "validation-horse-or-human"),
        strict=True,
    ):
        (extracted / name).symlink_to(folder)
    from_folders = hoh.get_folders(extracted, cache_dir=cache)
    assert from_folders.train == extracted / "horse-or-human"
    pair = hoh.get_folders(
        [served / "horse-or-human.zip", from_zips.validation], cache_dir=cache
    )
    assert pair.train == from_zips.train
    with pytest.raises(FileNotFoundError, match="nowhere"):
        hoh.get_folders(tmp_path / "nowhere")
    with pytest.raises(hoh.DataError, match="holds neither"):
        hoh.get_folders(cache, cache_dir=cache)


def test_rgba_images_are_read_as_rgb(tmp_path):
    for name in hoh.CLASS_NAMES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes(_png("RGBA", value=200))
    (tmp_path / "humans" / "notes.txt").write_text("not an image: ignored")
    images, labels = hoh.read_images(tmp_path, 4)
    assert images.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(labels, [0, 1])


def test_synthetic_images_are_deterministic_per_seed(tmp_path):
    def draw(cache: str, seed: int) -> list[bytes]:
        folders = hoh.make_synthetic(tmp_path / cache, seed=seed, counts=SMALL)
        return [p.read_bytes() for p in sorted(folders.train.parent.rglob("*.png"))]

    first = draw("a", seed=0)
    assert len(first) == 8
    assert draw("b", seed=0) == first
    assert draw("c", seed=1) != first
    folders = hoh.make_synthetic(tmp_path / "a", seed=0, counts=SMALL)
    _, labels = hoh.read_images(folders.train, 300)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1])
    with Image.open(next(folders.validation.rglob("*.png"))) as image:
        assert (image.mode, image.size) == ("RGB", (300, 300))


def test_full_synthetic_set_has_the_real_counts(synthetic_cache):
    folders = hoh.get_folders("synthetic", cache_dir=synthetic_cache)
    for split, folder in (("train", folders.train), ("validation", folders.validation)):
        for name in hoh.CLASS_NAMES:
            assert len(list((folder / name).glob("*.png"))) == hoh.COUNTS[split][name]


def test_batches_in_order_and_as_a_seeded_stream():
    images = np.arange(10, dtype="uint8").reshape(10, 1, 1, 1) * 25
    labels = np.arange(10) % 2
    ordered = hoh.Batches(images, labels, batch_size=4)
    assert ordered.num_batches == 3
    x, y = ordered[2]
    np.testing.assert_allclose(x[:, 0, 0, 0], [200 / 255, 225 / 255])
    assert y.shape == (2, 1) and y.dtype == np.float32
    with pytest.raises(IndexError):
        ordered[3]

    stream = hoh.Batches(images, labels, batch_size=4, shuffle=True, seed=7)
    assert stream.num_batches is None
    drawn = np.concatenate([stream.indices(i) for i in range(5)])
    for start in (0, 10):  # every pass holds each image once
        assert sorted(drawn[start : start + 10]) == list(range(10))
    assert not np.array_equal(drawn[:10], drawn[10:])
    again = hoh.Batches(images, labels, batch_size=4, shuffle=True, seed=7)
    np.testing.assert_array_equal(again[3][0], stream[3][0])
    other = hoh.Batches(images, labels, batch_size=4, shuffle=True, seed=8)
    assert not np.array_equal(other.indices(0), stream.indices(0))


def test_model_and_the_classic_augmentation():
    model = hoh.build_model(32)
    assert model.output_shape == (None, 1)
    assert model.layers[0].name == "augmentation"
    assert "augmentation" not in [
        layer.name for layer in hoh.build_model((24, 28), augment=False).layers
    ]
    # ImageDataGenerator(rotation_range=40, width/height_shift_range=0.2,
    # shear_range=0.2 (degrees), zoom_range=0.2, horizontal_flip=True,
    # fill_mode="nearest"); fits in the other tests run it on each backend.
    configs = {
        type(layer).__name__: layer.get_config() for layer in hoh.augmentation().layers
    }
    assert configs["RandomRotation"]["factor"] == (-40 / 360, 40 / 360)
    translation = configs["RandomTranslation"]
    assert translation["height_factor"] == translation["width_factor"] == 0.2
    assert configs["RandomShear"]["x_factor"][1] == pytest.approx(0.00349, rel=1e-3)
    assert configs["RandomZoom"]["height_factor"] == 0.2
    assert configs["RandomZoom"]["width_factor"] == 0.2
    assert configs["RandomFlip"]["mode"] == "horizontal"
    for name in ("RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom"):
        assert configs[name]["fill_mode"] == "nearest"
    images = np.random.uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(hoh.augmentation()(images, training=False)), images
    )
