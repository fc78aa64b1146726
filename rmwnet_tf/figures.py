"""Figures for TensorBoard and reports, drawn with matplotlib's Agg renderer.

A figure is built as a `matplotlib.figure.Figure` on its own `FigureCanvasAgg`, never through
`pyplot`: pyplot keeps a global "current figure" and a display backend, which a training
process (callbacks, several writers, no display) should not depend on; a figure outside pyplot
needs no `close()` and is freed like any object. Builders return the Figure, so one can be
turned into PNG bytes (`to_png`, for files) or an RGB array (`to_rgb`, what `tf.summary.image`
takes after adding a batch axis) without drawing it twice.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
CURVE_SIZE = (480, 320)  # pixels (width, height) of the weighting-curve image


def new_figure(size_px: tuple[int, int]) -> Figure:
    """An empty figure of exactly `size_px` (width, height) pixels, attached to an Agg canvas."""
    width, height = size_px
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def weight_curve_figure(losses, weights, *, title: str = "", seen_losses=None,
                        size_px: tuple[int, int] = CURVE_SIZE) -> Figure:
    """The weighting function W(loss) as a line, over a histogram of the losses seen in training.

    The histogram (right axis, sample counts) shows where along the loss axis the samples lie,
    i.e. which part of the curve actually weights anything. The weight axis starts at 0 and
    reaches at least 1, so curves of different epochs compare by eye.
    """
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    figure = new_figure(size_px)
    axes = figure.add_subplot()
    if seen_losses is not None:
        seen = np.asarray(seen_losses, dtype=np.float64).reshape(-1)
        seen = seen[np.isfinite(seen)]
        if seen.size:
            counts = axes.twinx()
            counts.hist(seen, bins=40, range=(losses.min(), losses.max()), color="#cdd7e6")
            counts.set_ylabel("samples")
            axes.set_zorder(counts.get_zorder() + 1)  # the curve in front of the bars
            axes.patch.set_visible(False)
    axes.plot(losses, weights, color="#1f5ab4", linewidth=2)
    finite = weights[np.isfinite(weights)]
    axes.set_ylim(0.0, max(1.0, float(finite.max()) if finite.size else 1.0) * 1.05)
    axes.set_xlim(losses.min(), losses.max())
    axes.set_xlabel("loss")
    axes.set_ylabel("W(loss)")
    axes.grid(True, color="#e1e1e1")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes (no "Software" entry, so the bytes depend on the pixels only)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def to_rgb(figure: Figure) -> np.ndarray:
    """The figure as a uint8 array [height, width, 3]."""
    canvas = figure.canvas
    canvas.draw()
    return np.array(canvas.buffer_rgba())[..., :3]


SUSPECT_CELL = (150, 170)  # pixels (width, height) of one image and its caption


def suspects_figure(images, captions, *, columns: int = 8, title: str = "",
                    cell_px: tuple[int, int] = SUSPECT_CELL) -> Figure:
    """A contact sheet: the images in reading order, each with its (multi-line) caption above.

    Pixels are shown as they are (nearest-neighbour, no smoothing), so a 16x16 image looks as
    coarse as what the network saw; grey images (one channel) are drawn in grey.
    """
    images = np.asarray(images)
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    header = 30 if title else 0
    caption_px = 42  # three 8-pt lines above each image: the first row's must fit under the title
    height = rows * cell_px[1] + header
    figure = new_figure((columns * cell_px[0], height))
    grid = figure.add_gridspec(rows, columns, top=1 - (header + caption_px) / height,
                               bottom=0.01, left=0.005, right=0.995, hspace=0.45, wspace=0.08)
    for position, (image, caption) in enumerate(zip(images, captions)):
        axes = figure.add_subplot(grid[position // columns, position % columns])
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        axes.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        axes.set_title(caption, fontsize=8, linespacing=1.1, pad=2)
        axes.set_xticks([])
        axes.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=11, y=1 - 8 / (rows * cell_px[1] + header))
    return figure
