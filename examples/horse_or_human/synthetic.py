"""A synthetic stand-in for horse-or-human, drawn when there is no network."""

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
_SYNTHETIC_VERSION = 1
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
