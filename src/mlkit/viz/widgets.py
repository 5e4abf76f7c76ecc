"""What every mlkit viewer shares: a lazily built ipywidgets tree, PNG encoding, and messages instead of tracebacks.

A viewer is not an ipywidgets subclass (that would import ipywidgets with mlkit.viz); it holds its root
widget in ``.widget`` and displays as it, so ``display(viewer)`` or a viewer as a cell's last expression
both work in Jupyter and in exported HTML.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from mlkit.errors import MlkitError

# Shown as a coloured note where the viewer would be; kinds map to a border colour.
_MESSAGE_COLOURS = {"error": "#c0392b", "warning": "#d68910", "info": "#2e86c1"}


def ipywidgets():
    """The ipywidgets module, with an actionable error when it is not installed."""
    try:
        import ipywidgets as w
    except ImportError as exc:
        raise MlkitError("the mlkit viewers need ipywidgets: pip install 'mlkit[full]' (or pip install "
                         "ipywidgets)") from exc
    return w


def png_bytes(rgb: np.ndarray) -> bytes:
    """RGB uint8 image -> PNG bytes (for an ``ipywidgets.Image``)."""
    from mlkit.client.http import encode_image

    return encode_image(rgb, "png")


def message_html(text: str, kind: str = "error") -> str:
    colour = _MESSAGE_COLOURS.get(kind, _MESSAGE_COLOURS["info"])
    return (f'<div class="mlkit-message mlkit-{kind}" style="border-left:4px solid {colour};padding:4px 8px;'
            f'margin:4px 0;white-space:pre-wrap">{html.escape(text)}</div>')


def placeholder(width: int, height: int, shade: int = 235) -> np.ndarray:
    """A flat grey image, for a panel with nothing to show (keeps side-by-side panels aligned)."""
    return np.full((max(1, height), max(1, width), 3), shade, np.uint8)


class Viewer:
    """Base of the viewers: ``widget`` (root VBox), ``message`` (the note shown, '' when none)."""

    css_class = "mlkit-viewer"

    def __init__(self, title: str = "") -> None:
        w = ipywidgets()
        self._w = w
        self.message = ""
        self._message = w.HTML(layout=w.Layout(display="none"))
        self.title = w.HTML(f"<b>{html.escape(title)}</b>" if title else "")
        self.body = w.VBox()
        self.widget = w.VBox([self.title, self._message, self.body])
        self.widget.add_class("mlkit-viewer")
        self.widget.add_class(self.css_class)

    def show_message(self, text: str, kind: str = "error") -> None:
        """Show ``text`` above the viewer's body (``''`` hides it)."""
        self.message = text
        self._message.value = message_html(text, kind) if text else ""
        self._message.layout.display = "" if text else "none"

    def fail(self, text: str) -> None:
        """Nothing to browse: only the message stays."""
        self.show_message(text, "error")
        self.body.children = ()

    def _repr_mimebundle_(self, **kw: Any):
        return self.widget._repr_mimebundle_(**kw)
