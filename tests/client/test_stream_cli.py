"""``mlkit stream``: a whole run with outputs, and bad input as one clear line (exit 2), never a traceback."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlkit.cli import main


def run(*args):
    result = CliRunner().invoke(main, ["stream", *map(str, args)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_stream_a_file_with_annotated_video(server, clip, tmp_path):
    import cv2

    out = tmp_path / "out"
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"class_names": ["person", "helmet", "helmet-on", "helmet-off"]}))
    r = run("--source", clip, "--endpoint", server.url, "--model", "little", "--mode", "client", "--batch-size", 4,
            "--fast", "--output", out, "--annotate", "--class-names", meta, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "end-to-end" in r.output and "FPS" in r.output and "p95" in r.output and "dropped 0" in r.output
    assert "end of file after 36 frames" in r.output
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(36))
    labels = {d["label"] for x in lines for d in x["detections"]}
    assert labels and labels <= {"person", "helmet", "helmet-on", "helmet-off"}
    cap = cv2.VideoCapture(str(out / "annotated.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 36
    cap.release()
    assert not list(out.glob(".*tmp*")), "no temp file may be left behind"


def test_too_few_class_names_are_said_once_and_ids_stay_numbers(server, clip, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="mlkit.client.stream"):
        r = run("--source", clip, "--endpoint", server.url, "--model", "little", "--fast", "--output", out,
                "--class-names", "person", "--no-progress")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    ids = {d["class_id"] for x in lines for d in x["detections"]}
    assert max(ids) >= 1, "the clip must show a class beyond the one name given"
    assert {d["label"] for x in lines for d in x["detections"] if d["class_id"] >= 1} <= {"1", "2", "3"}
    warned = [m for m in caplog.messages if "only 1 class names were given (person)" in m]
    assert len(warned) == 1, caplog.messages


def test_missing_file(server, tmp_path):
    r = run("--source", tmp_path / "nope.avi", "--endpoint", server.url, "--model", "little")
    assert r.exit_code == 2 and "video file not found" in r.output


def test_undecodable_file(server, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("these are not video frames\n" * 200)
    r = run("--source", bad, "--endpoint", server.url, "--model", "little")
    assert r.exit_code == 2 and "notes.mp4" in r.output and "decode" in r.output


def test_unreachable_source_url(server):
    from mlkit.serving.server import free_port

    r = run("--source", f"rtsp://127.0.0.1:{free_port()}/cam", "--endpoint", server.url, "--model", "little",
            "--open-timeout", 3)
    assert r.exit_code == 2 and "unreachable" in r.output


@pytest.mark.parametrize(("endpoint", "model", "message"), [
    ("127.0.0.1:8080", "little", "http:// or https://"),
    ("http://127.0.0.1:{port}", "little", "cannot reach the model server"),
    ("{server}", "nosuchmodel", "does not serve a model named 'nosuchmodel'"),
])
def test_bad_endpoint(server, clip, endpoint, model, message):
    from mlkit.serving.server import free_port

    endpoint = endpoint.format(port=free_port(), server=server.url)
    r = run("--source", clip, "--endpoint", endpoint, "--model", model)
    assert r.exit_code == 2 and message in r.output


def test_annotate_needs_output(server, clip):
    r = run("--source", clip, "--endpoint", server.url, "--model", "little", "--annotate")
    assert r.exit_code == 2 and "--annotate needs --output" in r.output
