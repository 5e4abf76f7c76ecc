"""crop_grid: every crop captioned with each model's guess, coloured by whether it is right."""

from __future__ import annotations

import numpy as np
import pytest


def test_crop_grid_marks_right_and_wrong_guesses():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlkit.errors import MlkitError
    from mlkit.viz.plots import crop_grid

    crops = np.zeros((5, 16, 16, 3), np.uint8)
    truth = np.array([0, 1, 2, 0, 1])
    guesses = {"a": truth, "b": np.array([0, 2, 2, 1, 1])}
    fig = crop_grid(crops, truth, guesses, ("on", "off", "bg"), cols=3)
    try:
        shown = [ax for ax in fig.axes if ax.images]
        assert len(fig.axes) == 6 and len(shown) == 5  # 2 rows of 3, the last cell left empty
        captions = {t.get_text(): t.get_color() for t in shown[1].texts}
        assert captions == {"a: off": "#1e8449", "b: bg": "#c0392b"}
        assert shown[1].get_title(loc="left") == "true: off"
        with pytest.raises(MlkitError, match="b: 4 predictions for 5 crops"):
            crop_grid(crops, truth, {"b": truth[:4]}, ("on", "off", "bg"))
    finally:
        plt.close("all")
