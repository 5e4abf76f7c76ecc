"""Small matplotlib figures for the notebooks (pyplot is imported when a figure is made)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mlkit.errors import MlkitError


def crop_grid(crops: Sequence[np.ndarray], truth: Sequence[int], predictions: Mapping[str, Sequence[int]],
              class_names: Sequence[str], cols: int = 6):
    """Each crop with its true class and every model's guess, green when right and red when wrong.

    ``predictions``: ``{model name: class index per crop}``, e.g. each ensemble member and the ensemble.
    """
    import matplotlib.pyplot as plt

    n = len(crops)
    if n == 0:
        raise MlkitError("crop_grid needs at least one crop")
    for name, labels in predictions.items():
        if len(labels) != n:
            raise MlkitError(f"{name}: {len(labels)} predictions for {n} crops")
    rows = (n + cols - 1) // cols
    lines = len(predictions)
    side, line = 1.8, 0.16  # inches: a crop, a line of text under it
    height = rows * (side + 0.3 + line * lines)
    fig, axes = plt.subplots(rows, cols, figsize=(1.05 * side * cols, height), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.3 / height, bottom=(0.1 + line * lines) / height,
                        wspace=0.08, hspace=(0.35 + line * lines) / side)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:n]):
        ax.imshow(crops[i])
        ax.set_title(f"true: {class_names[int(truth[i])]}", fontsize=8, loc="left")
        for k, (name, labels) in enumerate(predictions.items()):
            guess = int(labels[i])
            ax.annotate(f"{name}: {class_names[guess]}", (0, 0), xycoords="axes fraction", xytext=(0, -3 - 11 * k),
                        textcoords="offset points", fontsize=7, va="top",
                        color="#1e8449" if guess == int(truth[i]) else "#c0392b")
    return fig


def plot_drift(trace, ax=None, title: str | None = None):
    """Edge-vs-cloud agreement over the frames of a clip (``mlkit.joint.drift.DriftTrace``): the audited and the
    hard frames' windows, their alarm thresholds, the site switch and where the alarm was raised. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if not trace.frame:
        raise MlkitError("the trace has no frame with a cloud answer: nothing to plot (was every frame easy and "
                         "none audited?)")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.2))
    frames = np.asarray(trace.frame)
    for values, kind, color, key in ((trace.agreement, "audited", "#1f77b4", "threshold"),
                                     (trace.agreement_hard, "hard", "#ff7f0e", "hard_threshold")):
        y = np.array([np.nan if v is None else v for v in values], float)
        ax.step(frames, y, where="post", color=color, label=f"{kind} frames")
        if key in trace.config:
            ax.axhline(trace.config[key], color=color, lw=0.8, ls=":")
    if trace.switch is not None:
        ax.axvline(trace.switch, color="0.3", lw=1.2, ls="--", label=f"site switch ({trace.switch})")
    for n, f in enumerate(trace.alarms):
        ax.axvline(f, color="#c0392b", lw=1.5, label=f"alarm ({f})" if n == 0 else None)
    for f in trace.clears:
        ax.axvline(f, color="#1e8449", lw=1.0, ls="-.")
    ax.set_xlim(0, trace.num_frames)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("agreement (mAP@0.5 vs cloud)")
    ax.set_title(title or "edge/cloud agreement", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    return ax
