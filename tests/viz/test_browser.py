"""The viewers render in a real browser: a notebook showing each viewer is executed (widget state stored),
exported to HTML with nbconvert, and opened in headless Chromium.

Checks: the DOM has each viewer with its image(s) and controls, and the screenshot shows the DetectionViewer's
picture (the PNG the kernel drew, found where the DOM says the image is). The screenshots of the viewers are
written to docs/images/ (shown in the README). Needs `make browser` (Debian's chromium and the widget renderer
from npm); skips cleanly without them.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "build" / "browser"
RENDERER = ASSETS / "html-manager" / "dist" / "embed-amd.js"
REQUIRE = ASSETS / "requirejs" / "require.js"
DOCS = ROOT / "docs" / "images"
VIEWERS = {"mlkit-detection-viewer": "detection_viewer", "mlkit-joint-viewer": "joint_inference_viewer",
           "mlkit-stream-monitor": "stream_monitor", "mlkit-run-view": "pipeline_run_view"}
WINDOW = (1100, 3600)

# Appended to the exported page: once the widgets are drawn, write where each viewer and image is (page pixels).
GEOMETRY_JS = """
<script>
window.addEventListener('load', function () {
  function box(el) { var r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height}; }
  setTimeout(function () {
    var out = [];
    document.querySelectorAll('.mlkit-viewer').forEach(function (v) {
      var images = Array.prototype.map.call(v.querySelectorAll('img.mlkit-image'), box);
      out.push({classes: v.className, box: box(v), images: images});
    });
    var pre = document.createElement('pre');
    pre.id = 'mlkit-geometry';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 2500);
});
</script>
"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium: run `make browser` (installs Debian's chromium)")
    if not (RENDERER.is_file() and REQUIRE.is_file()):
        pytest.skip(f"no widget renderer under {ASSETS}: run `make browser` (fetches it from npm)")
    return exe


def _browse(exe: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--allow-file-access-from-files", "--hide-scrollbars", "--force-device-scale-factor=1",
           f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=8000",
           *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _notebook(params: dict) -> object:
    import nbformat

    cells = [
        nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()),
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from mlkit.data.layout import load_split\n"
            "from mlkit.viz import DetectionViewer, JointInferenceViewer, PipelineRunView, StreamMonitor\n"
            "from mlkit.viz.records import load_predictions\n"
            "scenes = load_split(SCENES, 'test')\n"
            "DetectionViewer.from_dataset(scenes, PREDICTIONS, score_threshold=0.3)"),
        nbformat.v4.new_code_cell(
            "JointInferenceViewer.from_results(JOINT, CLIP, hard_only=True)"),
        nbformat.v4.new_code_cell(
            "from IPython.display import display\n"
            "from mlkit.client.stream import StreamConfig\n"
            "from mlkit.client.video import open_source\n"
            "monitor = StreamMonitor(refresh=0.0)\n"
            "display(monitor)\n"
            "result = monitor.run(open_source(CLIP), StreamConfig(URL, 'little', mode='client', batch_size=2))\n"
            "assert result is not None, monitor.message"),
        nbformat.v4.new_code_cell("PipelineRunView.local(RUN)"),
    ]
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                           "display_name": "Python 3"}})


@pytest.fixture(scope="module")
def exported(tmp_path_factory, scenes, scene_predictions, clip, joint_results, little_server, local_run):
    """The executed notebook (widget state stored) exported to HTML that loads the renderer from build/browser."""
    exe = _chromium()
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    from mlkit.client.stream import ResultWriter
    from mlkit.client.video import Frame

    tmp = tmp_path_factory.mktemp("browser")
    preds = tmp / "predictions.jsonl"
    writer = ResultWriter(preds, scenes.class_names)
    for i, det in enumerate(scene_predictions):
        writer.write(Frame(i, np.zeros((1, 1, 3), np.uint8), 0.0, 0.0), det, 0.0)
    writer.close()
    scenes_root = next(p for p in scenes.images[0].path.parents if (p / "dataset.json").is_file())
    nb = _notebook({"SCENES": str(scenes_root), "PREDICTIONS": str(preds), "CLIP": str(clip),
                    "JOINT": str(joint_results), "URL": little_server.url, "RUN": str(local_run)})
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
    exporter = HTMLExporter(widget_renderer_url=RENDERER.as_uri(), require_js_url=REQUIRE.as_uri())
    body, _ = exporter.from_notebook_node(nb)
    page = tmp / "viewers.html"
    page.write_text(body.replace("</body>", GEOMETRY_JS + "</body>"))
    return exe, page, nb, tmp


def test_the_viewers_render_in_chromium(exported):
    from bs4 import BeautifulSoup

    exe, page, nb, tmp = exported
    shot = tmp / "page.png"
    # one browser run: the DOM after the widgets rendered, and a screenshot of the same layout
    dom = _browse(exe, page, tmp / "profile", "--dump-dom", f"--screenshot={shot}")
    assert dom.returncode == 0 and shot.is_file(), dom.stderr[-2000:]
    doc = BeautifulSoup(dom.stdout, "html.parser")
    geometry = doc.find(id="mlkit-geometry")
    assert geometry is not None, "the page's script did not run (widget renderer not loaded?)"
    viewers = json.loads(geometry.get_text())
    found = {c for v in viewers for c in v["classes"].split() if c in VIEWERS}
    assert found == set(VIEWERS), f"rendered: {found}; errors: {dom.stderr[-1500:]}"

    (det,) = doc.select(".mlkit-detection-viewer")
    imgs = det.select("img.mlkit-image")
    assert len(imgs) == 1 and imgs[0].get("src", "").startswith(("blob:", "data:"))
    assert det.select(".widget-slider") and len(det.select(".widget-toggle-button")) == 4
    assert det.select(".widget-checkbox") and "predicted boxes shown" in det.get_text()
    (joint,) = doc.select(".mlkit-joint-viewer")
    assert len(joint.select("img.mlkit-image")) == 2
    assert "edge" in joint.get_text() and "cloud" in joint.get_text()
    (monitor,) = doc.select(".mlkit-stream-monitor")
    assert "done:" in monitor.get_text() and monitor.select("img.mlkit-image")
    (run,) = doc.select(".mlkit-run-view")
    assert "succeeded" in run.get_text() and "map50" in run.get_text()

    import cv2

    screen = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert screen.shape[:2] == (WINDOW[1], WINDOW[0])

    # The DetectionViewer's image region is not blank, and it is the picture the kernel drew.
    (view,) = [v for v in viewers if "mlkit-detection-viewer" in v["classes"]]
    b = view["images"][0]
    x, y, w, h = (int(round(b[k])) for k in ("x", "y", "w", "h"))
    assert w > 100 and h > 100 and y + h <= WINDOW[1], b
    region = screen[y:y + h, x:x + w].astype(np.float32)
    assert region.std() > 20, "the image region is blank"
    drawn = _widget_image(nb, "mlkit-image", owner="mlkit-detection-viewer")
    drawn = cv2.resize(drawn, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    corr = np.corrcoef(region.reshape(-1), drawn.reshape(-1))[0, 1]
    assert corr > 0.95, f"the screenshot's image region does not match the viewer's picture (r = {corr:.3f})"

    # Screenshots of each viewer for the docs (cropped to the viewer's box).
    DOCS.mkdir(parents=True, exist_ok=True)
    for v in viewers:
        name = next(VIEWERS[c] for c in v["classes"].split() if c in VIEWERS)
        bx = v["box"]
        x0, y0 = max(0, int(bx["x"]) - 4), max(0, int(bx["y"]) - 4)
        crop = screen[y0:min(WINDOW[1], int(bx["y"] + bx["h"]) + 4), x0:min(WINDOW[0], int(bx["x"] + bx["w"]) + 4)]
        assert crop.size and crop.std() > 5, name
        cv2.imwrite(str(DOCS / f"{name}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))


def _widget_image(nb, image_class: str, owner: str) -> np.ndarray:
    """The PNG of the first Image widget with ``image_class`` inside the ``owner`` viewer, from the stored state."""
    import cv2

    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]

    def children(model_id: str):
        st = state[model_id]["state"]
        for ref in st.get("children", []):
            yield ref.removeprefix("IPY_MODEL_")

    def find(model_id: str):
        st = state[model_id]["state"]
        if state[model_id]["model_name"] == "ImageModel" and image_class in st.get("_dom_classes", []):
            return state[model_id]
        for child in children(model_id):
            if (hit := find(child)) is not None:
                return hit
        return None

    root = next(k for k, m in state.items() if owner in m["state"].get("_dom_classes", []))
    model = find(root)
    assert model is not None
    buffers = model.get("buffers") or []
    raw = base64.b64decode(next(b["data"] for b in buffers if b["path"] == ["value"]))
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
