"""The matplotlib figures: exact pixel sizes, PNG and RGB forms of one figure, and no pyplot state."""

import io

import numpy as np
from PIL import Image

from rmwnet_tf import figures

LOSSES = np.linspace(0.0, 4.0, 50)
WEIGHTS = np.exp(-LOSSES)


def test_weight_curve_rgb_has_the_requested_size_and_draws_the_line():
    image = figures.to_rgb(figures.weight_curve_figure(LOSSES, WEIGHTS, title="W(loss), epoch 3"))
    assert image.shape == (320, 480, 3) and image.dtype == np.uint8
    line = np.all(image == (0x1F, 0x5A, 0xB4), axis=-1)  # the curve's colour, exactly
    assert line.sum() > 100


def test_histogram_of_seen_losses_is_drawn_behind_the_curve():
    plain = figures.to_rgb(figures.weight_curve_figure(LOSSES, WEIGHTS, size_px=(300, 200)))
    with_bars = figures.to_rgb(figures.weight_curve_figure(
        LOSSES, WEIGHTS, seen_losses=np.r_[np.full(90, 0.5), 3.0, np.nan], size_px=(300, 200)))
    bars = (0xCD, 0xD7, 0xE6)
    assert not np.all(plain == bars, axis=-1).any()
    assert np.all(with_bars == bars, axis=-1).sum() > 100


def test_png_bytes_decode_to_the_same_pixels_as_rgb():
    figure = figures.weight_curve_figure(LOSSES, WEIGHTS)
    png = figures.to_png(figure)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = np.array(Image.open(io.BytesIO(png)).convert("RGB"))
    np.testing.assert_array_equal(decoded, figures.to_rgb(figure))


def test_figures_stay_out_of_pyplot():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    figures.to_rgb(figures.weight_curve_figure(LOSSES, WEIGHTS))
    assert plt.get_fignums() == before
