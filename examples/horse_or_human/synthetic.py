"""A synthetic stand-in for horse-or-human, drawn when there is no network."""

import colorsys
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .archives import cache_folder
from .images import CLASS_NAMES, COUNTS, Folders, parallel_map, pillow

# Bump when `make_synthetic` draws differently, so old caches are not reused.
_SYNTHETIC_VERSION = 4
SPLITS = {"train": "horse-or-human", "validation": "validation-horse-or-human"}
"""Each split's folder, named as the public archive extracts to."""


def make_synthetic(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    image_size: int = 300,
    counts: Mapping[str, Mapping[str, int]] = COUNTS,
) -> Folders:
    """Draws a synthetic stand-in for horse-or-human, once per seed.

    Each image is a sky over ground, their colours drawn from palettes both
    classes share, with one figure that fills most of the frame, as in the
    real renders: a horse (a wide body on four legs, with a neck, a head and
    a tail, in a brown, black or grey coat, facing left or right) or a human
    (upright, with a skin-toned head and arms and brightly coloured clothes).
    Sizes, places and shades vary. Colours and shapes both tell the classes
    apart, as in the real set; the figures' size, the palettes and the
    command's input size and epochs were calibrated together so that the
    classic CNN learns them in a few CPU minutes without reaching 100%
    (`docs/horse_or_human.md`). The folders, names and counts match the real
    set. The images depend only on the seed and are kept in the cache.

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
    >>> folders.source
    'synthetic'
    """
    key = hashlib.sha256(
        repr((_SYNTHETIC_VERSION, seed, image_size, dict(counts))).encode()
    ).hexdigest()[:12]
    root = cache_folder(cache_dir) / f"horse-or-human-synthetic-{key}"
    if not root.exists():
        work = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
        try:
            jobs = []
            for part, (split, folder) in enumerate(SPLITS.items()):
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
            parallel_map(lambda job: _draw(*job, seed=seed, size=image_size), jobs)
            os.replace(work, root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    train, validation = (root / folder for folder in SPLITS.values())
    return Folders(train, validation, "synthetic", f"make_synthetic(seed={seed})")


def _draw(
    path: Path, part: int, label: int, index: int, *, seed: int, size: int
) -> None:
    """Draws one image, from a generator keyed by its seed, split, class, index."""
    pil = pillow()
    rng = np.random.default_rng([seed, part, label, index])
    sky, ground = _jitter(rng, _SKIES), _jitter(rng, _GROUNDS)
    horizon = int(size * rng.uniform(0.55, 0.8))
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:horizon], pixels[horizon:] = sky, ground
    image = pil.Image.fromarray(pixels)
    figure = _horse if label == 0 else _human
    figure(pil.ImageDraw.Draw(image), rng, size, horizon)
    # Fast rather than small: the images are drawn again rather than shipped.
    image.save(path, compress_level=1)


# Base colours, each drawn with +-25 per channel.
_SKIES = ((135, 180, 225), (200, 210, 220), (90, 120, 170), (230, 200, 160))
_GROUNDS = ((80, 140, 60), (150, 130, 90), (110, 110, 110), (60, 100, 50))
_COATS = ((110, 70, 40), (150, 100, 60), (60, 40, 25), (35, 30, 30), (90, 80, 70))
_SKINS = ((250, 215, 180), (225, 180, 140), (185, 135, 95), (135, 90, 60))


def _jitter(
    rng: np.random.Generator, palette: tuple[tuple[int, ...], ...], spread: int = 25
) -> tuple[int, ...]:
    """A colour of the palette, shifted by up to `spread` per channel."""
    base = np.array(palette[rng.integers(len(palette))])
    return tuple(
        int(c) for c in np.clip(base + rng.integers(-spread, spread + 1, 3), 0, 255)
    )


def _colour(rng: np.random.Generator) -> tuple[int, ...]:
    """A bright, saturated colour, as clothes often are."""
    rgb = colorsys.hsv_to_rgb(
        rng.uniform(), rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0)
    )
    return tuple(int(255 * c) for c in rgb)


def _horse(draw: Any, rng: np.random.Generator, size: int, horizon: int) -> None:
    s = size * rng.uniform(0.7, 1.0)
    x, y = size * rng.uniform(0.4, 0.6), horizon - s * rng.uniform(0.25, 0.35)
    facing = rng.choice([-1, 1])
    colour = _jitter(rng, _COATS)
    body = (x - s / 3, y - s / 7, x + s / 3, y + s / 7)
    draw.ellipse(body, fill=colour)
    for dx in (-0.28, -0.18, 0.18, 0.28):
        leg_x = x + dx * s
        draw.rectangle((leg_x - s / 30, y, leg_x + s / 30, y + s * 0.3), fill=colour)
    neck_x = x + facing * s * 0.3
    head_x, head_y = x + facing * s * 0.42, y - s * 0.2
    draw.line((neck_x, y, head_x, head_y), fill=colour, width=max(1, int(s / 8)))
    draw.ellipse(
        (head_x - s / 10, head_y - s / 16, head_x + s / 10, head_y + s / 16),
        fill=colour,
    )
    tail_x = x - facing * s * 0.33
    draw.line(
        (tail_x, y, tail_x - facing * s / 10, y + s / 5),
        fill=colour,
        width=max(1, int(s / 30)),
    )


def _human(draw: Any, rng: np.random.Generator, size: int, horizon: int) -> None:
    # Head inside the frame: the figure is at most as tall as its feet are low.
    feet = min(horizon + size * rng.uniform(0, 0.1), size * 0.97)
    s = feet * rng.uniform(0.75, 0.98)
    x = size * rng.uniform(0.4, 0.6)
    skin, clothes = _jitter(rng, _SKINS), _colour(rng)
    hips, shoulders = feet - s * 0.45, feet - s * 0.8
    width = max(1, int(s / 9))
    for dx in (-1, 1):
        draw.line((x, hips, x + dx * s / 10, feet), fill=clothes, width=width)
        arm = rng.uniform(0.1, 0.3)
        draw.line(
            (x, shoulders, x + dx * s * arm, shoulders + s * 0.3),
            fill=skin,
            width=width,
        )
    draw.rectangle((x - s / 6, shoulders, x + s / 6, hips), fill=clothes)
    draw.ellipse((x - s / 12, shoulders - s / 6, x + s / 12, shoulders), fill=skin)
