"""``mlkit stream``: near-real-time video inference through a running mlkit (KServe) model server."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlkit.cli.tools import friendly
from mlkit.errors import MlkitError


def _class_names(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    path = Path(text)
    if path.suffix == ".json" and path.is_file():  # a model's metadata.json
        import json

        try:
            names = json.loads(path.read_text())["class_names"]
        except (ValueError, KeyError, TypeError) as exc:
            raise MlkitError(f"{path}: no 'class_names' list in it ({exc})") from None
        return tuple(str(n) for n in names)
    return tuple(n.strip() for n in text.split(",") if n.strip())


@click.command("stream")
@click.option("--source", required=True, metavar="PATH|URL|INDEX",
              help="A video file, an rtsp:// or http(s):// stream, or a camera index (0, 1, ...).")
@click.option("--endpoint", required=True, metavar="URL", help="The model server, e.g. http://127.0.0.1:8080.")
@click.option("--model", required=True, help="Model name on the server.")
@click.option("--mode", type=click.Choice(["server", "client"]), default="server", show_default=True,
              help="server: one frame per request, the server batches; client: --batch-size frames per request.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=4, show_default=True,
              help="client mode: frames per request. server mode: the batch the server forms (sets the default "
                   "--max-in-flight to twice this; start the server with --max-batch-size N).")
@click.option("--max-in-flight", type=click.IntRange(1, 512), default=None,
              help="Most requests outstanding at once.  [default: 2 x batch size in server mode, 2 in client mode]")
@click.option("--protocol", type=click.Choice(["v1", "v2"]), default="v2", show_default=True,
              help="v1: JSON with base64 images; v2: a binary tensor.")
@click.option("--encoding", type=click.Choice(["jpeg", "png", "raw"]), default="jpeg", show_default=True,
              help="How frames travel: JPEG (small), PNG (lossless) or raw pixels (v2 only; no encoding cost, "
                   "but ~1.3 MB per 768x576 frame - for a local server).")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write results.jsonl (one line per frame, in frame order) and summary.json here.")
@click.option("--annotate", is_flag=True, help="Also write annotated.avi with the boxes drawn (needs --output).")
@click.option("--realtime/--fast", default=True, show_default=True,
              help="Files: read at the file's frame rate (like a camera) or as fast as they decode. "
                   "Live sources always run at their own rate.")
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=None,
              help="Server-side score threshold  [default: the model's].")
@click.option("--class-names", default=None, metavar="A,B,...|metadata.json",
              help="Class names for labels in the outputs (a comma list, or the model's metadata.json); "
                   "without it labels are class ids.")
@click.option("--queue-size", type=click.IntRange(1, 1024), default=None,
              help="Frames the reader may queue ahead (live sources drop the oldest when it is full).  "
                   "[default: one request's frames + 1]")
@click.option("--reconnect", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Live URLs: reopen the stream this many times when it stops.")
@click.option("--open-timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for a URL to open.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
              help="Seconds to wait for one answer.")
@click.option("--interval", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True,
              help="Seconds between stats lines (a progress bar for files).")
@click.option("--no-progress", is_flag=True, help="Stats lines instead of a progress bar for files.")
@click.option("--auth-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding the server's bearer token (a server started with --auth-token-file).")
@friendly
def stream(source, endpoint, model, mode, batch_size, max_in_flight, protocol, encoding, output_dir, annotate, realtime,
           score_threshold, class_names, queue_size, reconnect, open_timeout, timeout, interval, no_progress,
           auth_token_file) -> None:
    """Stream a video through the model server and report honest figures.

    End-to-end FPS counts frames whose results came back (overall and over a sliding window); latency runs
    from capture to result (p50/p95/p99); live sources drop the oldest frames when the server falls behind,
    and the drops are counted. Files never drop a frame.

    \b
    mlkit stream --source data/vtest.avi --endpoint http://127.0.0.1:8080 --model little \\
        --mode client --batch-size 4 --fast --output runs/stream
    """
    from mlkit.client.stream import StreamConfig, StreamError, check_endpoint, queue_size_for, run_stream
    from mlkit.client.video import open_source
    from mlkit.serving.auth import read_token_file

    if annotate and output_dir is None:
        raise click.UsageError("--annotate needs --output DIR")
    config = StreamConfig(endpoint=endpoint, model=model, mode=mode, batch_size=batch_size,
                          max_in_flight=max_in_flight, protocol=protocol, encoding=encoding,
                          score_threshold=score_threshold, timeout=timeout,
                          token=None if auth_token_file is None else read_token_file(auth_token_file))
    names = _class_names(class_names)
    check_endpoint(config)  # before opening the source: a URL may take --open-timeout to fail
    src = open_source(source, realtime=realtime, queue_size=queue_size or queue_size_for(config),
                      reconnect=reconnect, open_timeout=open_timeout)
    info = src.info
    click.echo(f"{info.name}: {info.width}x{info.height}, "
               f"{f'{info.fps:g} fps' if info.fps else 'fps unknown'}, "
               f"{f'{info.frames} frames' if info.frames else 'live' if info.live else 'length unknown'}; "
               f"mode {mode}, {config.frames_per_request} frame(s)/request, up to {config.in_flight} in flight, "
               f"{protocol}", err=True)
    try:
        result = run_stream(src, config, preflight=False, output_dir=output_dir, annotate=annotate,
                            class_names=names, echo=lambda line: click.echo(line, err=True),
                            progress=not no_progress, report_interval=interval)
    except StreamError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        src.stop()
        click.echo("interrupted" + (f"; results so far are in {output_dir}" if output_dir else ""), err=True)
        sys.exit(130)
    click.echo(result.end, err=True)
    click.echo(result.stats.line())
    for label, path in (("results", result.results_path), ("video", result.video_path),
                        ("summary", result.summary_path)):
        if path is not None:
            click.echo(f"{label}: {path}")
    if result.source_failed:
        sys.exit(1)
