"""Tiny numpy line-plot renderer for TensorBoard images.

Why not matplotlib: it is an optional dependency, slow to import, and not
thread-safe; a weighting curve needs only axes, ticks and one line. Text uses
a built-in 5-pixel-high bitmap font (upper case, digits, a few symbols)
drawn at 2x so it stays readable in TensorBoard's image panel.
"""

from __future__ import annotations

import numpy as np

_GLYPHS = {
    "0": ["XXX", "X.X", "X.X", "X.X", "XXX"],
    "1": [".X.", "XX.", ".X.", ".X.", "XXX"],
    "2": ["XXX", "..X", "XXX", "X..", "XXX"],
    "3": ["XXX", "..X", "XXX", "..X", "XXX"],
    "4": ["X.X", "X.X", "XXX", "..X", "..X"],
    "5": ["XXX", "X..", "XXX", "..X", "XXX"],
    "6": ["XXX", "X..", "XXX", "X.X", "XXX"],
    "7": ["XXX", "..X", "..X", "..X", "..X"],
    "8": ["XXX", "X.X", "XXX", "X.X", "XXX"],
    "9": ["XXX", "X.X", "XXX", "..X", "XXX"],
    ".": [".", ".", ".", ".", "X"],
    "-": ["...", "...", "XXX", "...", "..."],
    "+": ["...", ".X.", "XXX", ".X.", "..."],
    "(": [".X", "X.", "X.", "X.", ".X"],
    ")": ["X.", ".X", ".X", ".X", "X."],
    ":": [".", "X", ".", "X", "."],
    "/": ["..X", "..X", ".X.", "X..", "X.."],
    "=": ["...", "XXX", "...", "XXX", "..."],
    " ": ["..", "..", "..", "..", ".."],
    "A": [".X.", "X.X", "XXX", "X.X", "X.X"],
    "C": ["XXX", "X..", "X..", "X..", "XXX"],
    "D": ["XX.", "X.X", "X.X", "X.X", "XX."],
    "E": ["XXX", "X..", "XX.", "X..", "XXX"],
    "G": ["XXX", "X..", "X.X", "X.X", "XXX"],
    "H": ["X.X", "X.X", "XXX", "X.X", "X.X"],
    "I": ["XXX", ".X.", ".X.", ".X.", "XXX"],
    "L": ["X..", "X..", "X..", "X..", "XXX"],
    "M": ["X...X", "XX.XX", "X.X.X", "X...X", "X...X"],
    "N": ["X..X", "XX.X", "X.XX", "X..X", "X..X"],
    "O": ["XXX", "X.X", "X.X", "X.X", "XXX"],
    "P": ["XXX", "X.X", "XXX", "X..", "X.."],
    "R": ["XX.", "X.X", "XX.", "X.X", "X.X"],
    "S": ["XXX", "X..", "XXX", "..X", "XXX"],
    "T": ["XXX", ".X.", ".X.", ".X.", ".X."],
    "U": ["X.X", "X.X", "X.X", "X.X", "XXX"],
    "W": ["X...X", "X...X", "X.X.X", "X.X.X", ".X.X."],
    "X": ["X.X", "X.X", ".X.", "X.X", "X.X"],
    "Y": ["X.X", "X.X", ".X.", ".X.", ".X."],
}
_SCALE = 2
_GLYPH_HEIGHT = 5 * _SCALE
_SPACING = _SCALE  # blank columns between glyphs

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (225, 225, 225)
BARS = (205, 215, 230)
LINE = (31, 90, 180)


def text_width(text: str) -> int:
    """Width in pixels of `text` as `draw_text` renders it."""
    glyphs = [_GLYPHS.get(ch, _GLYPHS[" "]) for ch in text.upper()]
    return sum(len(g[0]) * _SCALE + _SPACING for g in glyphs) - (_SPACING if glyphs else 0)


def draw_text(image: np.ndarray, text: str, row: int, col: int, color=BLACK) -> None:
    """Draw `text` with its top-left corner at (row, col); clipped to the image.

    Lower case is drawn as upper case; characters without a glyph are blanks.
    """
    for ch in text.upper():
        glyph = _GLYPHS.get(ch, _GLYPHS[" "])
        bitmap = np.array([[c == "X" for c in line] for line in glyph])
        bitmap = np.kron(bitmap, np.ones((_SCALE, _SCALE), dtype=bool))
        _paint_mask(image, bitmap, row, col, color)
        col += bitmap.shape[1] + _SPACING


def _paint_mask(image, mask, row, col, color) -> None:
    height, width = image.shape[:2]
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + mask.shape[0], height), min(col + mask.shape[1], width)
    if r0 >= r1 or c0 >= c1:
        return
    window = mask[r0 - row : r1 - row, c0 - col : c1 - col]
    image[r0:r1, c0:c1][window] = color


def format_tick(value: float) -> str:
    """Short tick label: at most 3 significant digits, no trailing zeros."""
    if value == 0:
        return "0"
    return f"{value:.3g}".replace("e-0", "e-").replace("e+0", "e")


def nice_ticks(low: float, high: float, max_intervals: int = 4) -> np.ndarray:
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [low, high]."""
    span = max(high - low, 1e-12)
    raw_step = span / max_intervals
    magnitude = 10.0 ** np.floor(np.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step * (1 - 1e-9))
    first = np.floor(low / step + 1e-9) * step
    count = int(np.ceil((high - first) / step - 1e-9)) + 1
    return first + step * np.arange(count)


def render_curve(
    x,
    y,
    *,
    height: int = 200,
    width: int = 300,
    title: str = "",
    x_label: str = "loss",
    y_max: float | None = None,
    background_values=None,
) -> np.ndarray:
    """Plot y(x) as an RGB uint8 image [height, width, 3].

    Axes end on round tick values: x covers the data range, y starts at 0 and
    reaches at least `y_max` (default: 1, or the largest y if that is above
    1), which suits weights in [0, 1]. `background_values`,
    if given, are drawn as a light histogram behind the line (scaled to 40% of
    the plot height) to show where along x the data actually lies.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    finite = np.isfinite(x) & np.isfinite(y)
    x_lo, x_hi = (float(x[finite].min()), float(x[finite].max())) if finite.any() else (0.0, 1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    if y_max is None:
        y_max = max(1.0, float(y[finite].max()) if finite.any() else 1.0)
    x_ticks = nice_ticks(x_lo, x_hi)
    y_ticks = nice_ticks(0.0, y_max)
    x_lo, x_hi, y_max = float(x_ticks[0]), float(x_ticks[-1]), float(y_ticks[-1])

    image = np.full((height, width, 3), WHITE, dtype=np.uint8)
    left, right, top, bottom = 42, width - 16, 22, height - 32  # plot area, inclusive
    plot_w, plot_h = right - left, bottom - top

    def to_col(v):
        return left + (np.asarray(v) - x_lo) / (x_hi - x_lo) * plot_w

    def to_row(v):
        return bottom - np.asarray(v) / y_max * plot_h

    for value in x_ticks:
        image[top : bottom + 1, int(round(to_col(value)))] = GRID
    for value in y_ticks:
        image[int(round(to_row(value))), left : right + 1] = GRID

    if background_values is not None:
        _draw_histogram(image, np.asarray(background_values, dtype=np.float64), x_lo, x_hi,
                        left, bottom, plot_w, int(0.4 * plot_h))

    image[top : bottom + 1, left] = BLACK
    image[bottom, left : right + 1] = BLACK
    for value in x_ticks:
        col = int(round(to_col(value)))
        image[bottom + 1 : bottom + 4, col] = BLACK
        label = format_tick(value)
        label_col = min(col - text_width(label) // 2, width - 1 - text_width(label))
        draw_text(image, label, bottom + 6, label_col)
    for value in y_ticks:
        row = int(round(to_row(value)))
        image[row, left - 3 : left] = BLACK
        label = format_tick(value)
        draw_text(image, label, row - _GLYPH_HEIGHT // 2, left - 5 - text_width(label))

    draw_text(image, x_label, height - _GLYPH_HEIGHT - 1, right - text_width(x_label))
    draw_text(image, title, 3, left)

    _draw_polyline(image, to_col(x[finite]), to_row(y[finite]), (top, bottom, left, right), LINE)
    return image


def _draw_histogram(image, values, x_lo, x_hi, left, bottom, plot_w, max_bar) -> None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    counts, edges = np.histogram(values, bins=max(plot_w // 6, 1), range=(x_lo, x_hi))
    if counts.max() == 0:
        return
    bar_heights = np.round(counts / counts.max() * max_bar).astype(int)
    col_edges = np.round(left + (edges - x_lo) / (x_hi - x_lo) * plot_w).astype(int)
    for bar, c0, c1 in zip(bar_heights, col_edges[:-1], col_edges[1:]):
        if bar > 0:
            image[bottom - bar : bottom, c0 + 1 : c1] = BARS


def _draw_polyline(image, cols, rows, box, color) -> None:
    """Join consecutive points with 2-pixel-thick segments, clipped to `box`."""
    top, bottom, left, right = box
    if cols.size == 0:
        return
    if cols.size == 1:
        cols, rows = np.repeat(cols, 2), np.repeat(rows, 2)
    pieces_c, pieces_r = [], []
    for c0, r0, c1, r1 in zip(cols[:-1], rows[:-1], cols[1:], rows[1:]):
        steps = int(max(abs(c1 - c0), abs(r1 - r0))) + 2
        pieces_c.append(np.linspace(c0, c1, steps))
        pieces_r.append(np.linspace(r0, r1, steps))
    all_c = np.round(np.concatenate(pieces_c)).astype(int)
    all_r = np.round(np.concatenate(pieces_r)).astype(int)
    for dr, dc in ((0, 0), (1, 0), (0, 1), (1, 1)):
        r, c = all_r + dr, all_c + dc
        inside = (r >= top) & (r <= bottom) & (c >= left) & (c <= right)
        image[r[inside], c[inside]] = color
