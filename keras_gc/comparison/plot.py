"""The curves of a comparison, drawn with matplotlib (imported only here,
when a plot is asked for).

It draws arrays and knows nothing of runs, so the report depends on it and
not the other way round.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_COLOURS = ("tab:blue", "tab:orange")


def draw_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    title: str,
    path: str | os.PathLike[str],
) -> Path:
    """Writes one panel per metric, every arm's curves on it, as a PNG.

    Args:
        curves: `curves[arm][metric]`, an array of shape `(seeds, epochs)`.
            A metric named `val_<m>` is drawn dashed on `<m>`'s panel. With
            several seeds, a line is the mean and a band spans the minimum
            and maximum.
        title: The figure's title.
        path: Where to write the PNG.

    Returns:
        The path.
    """
    figure_class, canvas_class = _matplotlib()
    metrics = list(next(iter(curves.values())))
    panels = [m for m in metrics if not m.startswith("val_")]
    figure = figure_class(figsize=(6 * len(panels), 4.5), layout="constrained")
    for axes, metric in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        for (arm, arm_curves), colour in zip(curves.items(), _COLOURS, strict=True):
            for name, style in ((metric, "-"), (f"val_{metric}", "--")):
                if name not in arm_curves:
                    continue
                values = np.asarray(arm_curves[name])
                epochs = np.arange(1, values.shape[1] + 1)
                kind = "validation" if name.startswith("val_") else "training"
                axes.plot(
                    epochs,
                    values.mean(0),
                    style,
                    color=colour,
                    label=f"{arm}, {kind}",
                )
                if len(values) > 1:
                    axes.fill_between(
                        epochs,
                        values.min(0),
                        values.max(0),
                        color=colour,
                        alpha=0.15,
                    )
        axes.set(xlabel="epoch", ylabel=metric, title=metric)
        axes.legend()
    figure.suptitle(title)
    canvas_class(figure).print_png(str(path))
    return Path(path)


def _matplotlib() -> tuple[Any, Any]:
    """Imports matplotlib's figure and Agg canvas (no pyplot, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: `pip install matplotlib` (or "
            "`pip install keras-gc[examples]`), or skip the plot."
        ) from None
    return Figure, FigureCanvasAgg
