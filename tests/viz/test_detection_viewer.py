"""DetectionViewer built from real data: a Dataset with the little model's predictions, a stream's results.jsonl
over a video, a live server; and the messages it shows instead of tracebacks."""

from __future__ import annotations

import json
import shutil
import time

import cv2
import numpy as np
import pytest

from mlkit.detections import Detections


def _png(viewer) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(viewer.image.value, np.uint8), cv2.IMREAD_COLOR)


def test_from_dataset_counts_threshold_toggles_and_ground_truth(scenes, scene_predictions):
    from mlkit.viz import DetectionViewer

    v = DetectionViewer.from_dataset(scenes, scene_predictions, score_threshold=0.3)
    assert v.message == "" and len(v.indices) == len(scenes)
    # pick an image with predictions on both sides of 0.3 so the slider has something to move
    i = next(k for k, d in enumerate(scene_predictions) if (d.scores >= 0.3).any() and (d.scores < 0.3).any())
    v.index.value = i
    det, rec = scene_predictions[i], scenes[i]
    assert v.counts["predicted"] == len(det)
    assert v.counts["shown"] == int((det.scores >= 0.3).sum()) == len(v.shown_predictions)
    assert v.counts["ground_truth"] == len(rec.labels) == len(v.shown_ground_truth[1])
    assert _png(v).shape[:2] == (rec.height, rec.width)

    before = v.image.value
    v.score.value = 0.05
    assert len(v.shown_predictions) == int((det.scores >= 0.05).sum()) > v.counts["shown"] - 1
    assert v.image.value != before  # more boxes drawn

    top = int(np.bincount(det.labels).argmax())
    v.class_toggles[top].value = False
    assert top not in v.shown_predictions.labels and top not in v.shown_ground_truth[1]
    assert v.counts["hidden_class"] == int((det.labels == top).sum())
    v.class_toggles[top].value = True
    v.show_ground_truth.value = False
    assert len(v.shown_ground_truth[1]) == 0 and "hidden" in v.info.value


def test_ground_truth_is_white_and_predictions_use_class_colours(scenes):
    from mlkit.imaging import PALETTE
    from mlkit.viz import DetectionViewer

    rec = scenes[0]
    label = int(rec.labels[0])
    pred = Detections(rec.boxes[:1] + 40, [0.9], [label])  # a prediction away from the box it copies
    v = DetectionViewer.from_dataset(scenes, {0: pred}, limit=1)
    rgb = cv2.cvtColor(_png(v), cv2.COLOR_BGR2RGB)
    x0, y0, x1, y1 = (int(round(c)) for c in rec.boxes[0])
    gt_edge = rgb[(y0 + y1) // 2, x0]
    px0, py0, _, py1 = (int(round(c)) for c in pred.boxes[0])
    pred_edge = rgb[(py0 + py1) // 2, px0]
    assert tuple(gt_edge) == (255, 255, 255)
    assert tuple(pred_edge) == PALETTE[label % len(PALETTE)]


def test_from_jsonl_over_a_video(tmp_path, clip, clip_frames, detectors):
    from mlkit.client.stream import ResultWriter
    from mlkit.client.video import Frame
    from mlkit.viz import DetectionViewer

    names = detectors["int8"].meta.class_names
    writer = ResultWriter(tmp_path / "results.jsonl", names)
    dets = {}
    for i in (2, 5, 7):  # a stream that dropped frames: only these have results
        dets[i] = detectors["int8"].predict([clip_frames[i]], score_threshold=0.05)[0]
        writer.write(Frame(i, clip_frames[i], i / 10, time.perf_counter()), dets[i], 0.01)
    writer.close()
    v = DetectionViewer.from_jsonl(tmp_path / "results.jsonl", clip, score_threshold=0.0)
    assert v.message == "" and v.indices == [2, 5, 7]
    assert v.class_names == tuple(names[:len(v.class_names)]) and v.class_names  # named by the records
    v.index.value = 1
    assert v.current == 5 and v.counts["predicted"] == len(dets[5]) == v.counts["shown"]
    np.testing.assert_allclose(v.shown_predictions.boxes, dets[5].boxes, atol=0.01)
    assert "frame 5" in v.info.value and v.counts["ground_truth"] == 0

    from mlkit.data.synthetic.video import VideoLabels, labels_path_for

    labels = VideoLabels.load(labels_path_for(clip))
    v = DetectionViewer.from_jsonl(tmp_path / "results.jsonl", clip, ground_truth=dict(enumerate(labels.frames)))
    v.index.value = 2
    assert v.current == 7 and v.counts["ground_truth"] == len(labels.frames[7][1]) > 0


@pytest.mark.parametrize("case", ["empty dataset", "missing file", "empty file", "bad line", "no frames"])
def test_bad_inputs_give_a_message_not_a_traceback(tmp_path, scenes, clip, case):
    from mlkit.viz import DetectionViewer

    results = tmp_path / "results.jsonl"
    if case == "empty dataset":
        v = DetectionViewer.from_dataset(scenes.subset([]))
        expect = "no images"
    elif case == "missing file":
        v = DetectionViewer.from_jsonl(results, clip)
        expect = "not found"
    elif case == "empty file":
        results.write_text("")
        v = DetectionViewer.from_jsonl(results, clip)
        expect = "no results yet"
    elif case == "bad line":
        results.write_text('{"frame": 0, "detections": []}\nnot json\n{"frame": 1, "detections": []}\n')
        v = DetectionViewer.from_jsonl(results, clip)
        expect = "results.jsonl:2: not valid JSON"
    else:
        results.write_text(json.dumps({"frame": 0, "detections": []}) + "\n")
        v = DetectionViewer.from_jsonl(results, tmp_path / "nothing.avi")
        expect = "frames not found"
    assert expect in v.message
    assert expect in v._message.value and v.body.children == ()


def test_a_cut_last_line_is_left_out(tmp_path, clip):
    from mlkit.viz import DetectionViewer

    (tmp_path / "r.jsonl").write_text('{"frame": 0, "detections": []}\n{"frame": 1, "detec')
    v = DetectionViewer.from_jsonl(tmp_path / "r.jsonl", clip)
    assert v.message == "" and v.indices == [0]


def test_endpoint_down_shows_the_image_and_a_message(closed_url, scenes):
    from mlkit.viz import DetectionViewer

    v = DetectionViewer.from_endpoint(closed_url, "little", scenes, limit=2)
    assert "cannot reach" in v.message and closed_url in v.message
    assert v.image.value and v.counts["ground_truth"] == len(scenes[0].labels)  # still browsable
    assert "predicted" not in v.counts


def test_live_endpoint_shows_what_the_server_answers(little_server, scenes):
    from mlkit.client.http import ServingClient
    from mlkit.viz import DetectionViewer

    v = DetectionViewer.from_endpoint(little_server.url, "little", scenes, limit=3, score_threshold=0.2)
    assert v.message == ""
    with ServingClient(little_server.url, "little") as client:
        for i in range(3):
            v.index.value = i
            want = client.predict([scenes.load_image(i)], score_threshold=0.05)[0].filter(0.2)
            assert v.counts["shown"] == len(want), i
            np.testing.assert_allclose(v.shown_predictions.boxes, want.boxes, atol=1e-3)
    assert set(v.predictions) == {0, 1, 2}  # cached: going back does not ask again
    assert v.class_names[:len(scenes.class_names)] == scenes.class_names


def test_a_protected_endpoint_needs_the_token(tmp_path, scenes):
    from mlkit.serving.server import start_background_server
    from mlkit.viz import DetectionViewer
    from tests.viz.conftest import LITTLE

    repo = tmp_path / "repo"
    shutil.copytree(LITTLE / "int8", repo / "little" / "1")
    (tmp_path / "token").write_text("viewer-token-42\n")
    with start_background_server(repo, auth_token_file=tmp_path / "token", log_path=tmp_path / "server.log") as srv:
        refused = DetectionViewer.from_endpoint(srv.url, "little", scenes, limit=1)
        shown = DetectionViewer.from_endpoint(srv.url, "little", scenes, limit=1, token="viewer-token-42")
    assert "401" in refused.message and "token" in refused.message
    assert shown.message == "" and "predicted" in shown.counts
