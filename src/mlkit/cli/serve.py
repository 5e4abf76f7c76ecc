"""``mlkit serve``: run the model server here, manage detached local servers, write and apply KServe manifests.

``mlkit serve --model-dir DIR [--port N ...]`` (no subcommand) runs the server in the foreground until
Ctrl-C, as it always has. Subcommands:

- ``start NAME --model-dir DIR`` / ``stop [NAME]`` / ``status``: detached local servers (``mlkit.serving.lifecycle``)
- ``manifest NAME --storage-uri URI [--runtime]``: print InferenceService (and ServingRuntime) YAML
- ``deploy NAME --storage-uri URI`` / ``delete NAME``: apply to / remove from the cluster of your kubeconfig
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlkit.cli.tools import CONTEXT_SETTINGS, friendly
from mlkit.errors import MlkitError
from mlkit.serving.options import (
    DEFAULT_INSTANCES,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_LATENCY_MS,
    DEFAULT_MAX_PAYLOAD_MB,
    DEFAULT_THREADS,
)
from mlkit.serving.overload import DEFAULT_KEEP_VERSIONS, DEFAULT_MAX_QUEUE, DEFAULT_QUEUE_TIMEOUT_MS

# the interpreter options, shared by the foreground server, detached servers and the manifests
_THREADS = click.option("--threads", type=click.IntRange(min=1), default=DEFAULT_THREADS, show_default=True,
                        help="Interpreter threads per model instance.")
_INSTANCES = click.option("--instances", type=click.IntRange(min=1), default=DEFAULT_INSTANCES, show_default=True,
                          help="Interpreters per model, running merged batches in parallel (Triton's instance "
                               "count). More instances of fewer threads trade a lone request's latency for "
                               "throughput under load.")
# the local servers' model control (the manifests keep the image's default, poll)
_MODEL_CONTROL = click.option("--model-control", type=click.Choice(["none", "poll", "explicit"]), default="poll",
                              show_default=True,
                              help="As Triton's --model-control-mode. poll: load new version folders as they appear "
                                   "(hot reload); none: serve what the folder holds at start; explicit: the same, "
                                   "and clients may load and unload models through the v2 repository API, which "
                                   "the other modes refuse (403).")
# overload protection (mlkit.serving.overload)
_MAX_QUEUE = click.option("--max-queue", type=click.IntRange(min=0), default=DEFAULT_MAX_QUEUE, show_default=True,
                          help="Requests that may wait per model; one more gets 503 with Retry-After (gRPC "
                               "UNAVAILABLE), which clients retry. 0 = unbounded.")
_QUEUE_TIMEOUT = click.option("--queue-timeout-ms", type=click.FloatRange(min=0), default=DEFAULT_QUEUE_TIMEOUT_MS,
                              show_default=True,
                              help="Drop a request that waited longer than this for an interpreter (503); "
                                   "0 = no deadline.")
_KEEP_VERSIONS = click.option("--keep-versions", type=click.IntRange(min=1), default=DEFAULT_KEEP_VERSIONS,
                              show_default=True,
                              help="Newest versions of each model kept loaded (Triton's version policy 'latest'); "
                                   "older ones are unloaded when a new one arrives.")
# the server's bearer token (the manifests take a Kubernetes Secret instead: --auth-secret)
_AUTH_TOKEN_FILE = click.option("--auth-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                                help="File holding a bearer token: every route but health, readiness and /metrics "
                                     "then needs 'Authorization: Bearer <token>' (gRPC: metadata 'authorization'), "
                                     "else 401.  [default: $MLKIT_AUTH_TOKEN_FILE, else no authentication]")


_BATCH_SIZE = click.option("--max-batch-size", type=click.IntRange(min=1), default=DEFAULT_MAX_BATCH_SIZE,
                           show_default=True,
                           help="Merge concurrent requests up to this many images (1 = no batching).")
_LATENCY = click.option("--max-latency-ms", type=click.FloatRange(min=0), default=DEFAULT_MAX_LATENCY_MS,
                        show_default=True, help="Longest wait to fill a batch.")


def _model_options(fn):
    """The options every local server takes for each model version: batching, interpreters, queue, versions, model
    control and token (the foreground server and `serve start` alike)."""
    for option in reversed((_BATCH_SIZE, _LATENCY, _THREADS, _INSTANCES, _MAX_QUEUE, _QUEUE_TIMEOUT, _KEEP_VERSIONS,
                            _MODEL_CONTROL, _AUTH_TOKEN_FILE)):
        fn = option(fn)
    return fn


@click.group("serve", invoke_without_command=True, context_settings=CONTEXT_SETTINGS)
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model repository: <name>/<version>/model.tflite + metadata.json (required without a "
                   "subcommand).")
@click.option("--port", "--http-port", "http_port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="HTTP port (KServe v1 and v2 REST, /metrics).")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8081, show_default=True, help="v2 gRPC port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 to expose it.")
@_model_options
@click.option("--max-payload-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_PAYLOAD_MB,
              show_default=True, help="Largest request body; bigger ones get 400.")
@click.option("--poll-seconds", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="How often to look for new model versions (--model-control poll).")
@click.option("--graph-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Pipeline config (config.json, see `mlkit graph`): also serve its models and pipelines; "
                   "--model-dir is then optional.")
@click.option("--graph-step", default=None, metavar="PIPELINE/NODE",
              help="With --graph-config: serve only this node, as one step of a KServe InferenceGraph.")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log a line per request (request counts and latencies are on /metrics either way).")
@click.option("--response-delay-ms", type=click.FloatRange(min=0), default=0.0, hidden=True,
              help="Fault injection: hold every inference answer this long (tests of slow-cloud handling).")
@click.option("--no-watch", is_flag=True, hidden=True, help="Deprecated spelling of --model-control none.")
@click.pass_context
@friendly
def serve(ctx, model_dir, http_port, grpc_port, host, max_batch_size, max_latency_ms, threads, instances,
          max_queue, queue_timeout_ms, keep_versions, max_payload_mb, model_control, auth_token_file, poll_seconds,
          graph_config, graph_step, access_log, response_delay_ms, no_watch) -> None:
    """Serve models with KServe (v1/v2 REST, v2 gRPC), locally or on a cluster.

    Without a subcommand: serve every model in --model-dir in the foreground until Ctrl-C
    (`mlkit serve --model-dir models/repo --port 8080`). The options below apply only to that form;
    each subcommand has its own (`mlkit serve start --help`).
    """
    if ctx.invoked_subcommand is not None:
        return
    if model_dir is None and graph_config is None:
        raise click.UsageError("Missing option '--model-dir' or '--graph-config' (or use a subcommand: start, stop, "
                               "status, manifest, deploy, delete).")
    if http_port == grpc_port:
        raise click.UsageError(f"--port and --grpc-port are both {http_port}; give them different ports")
    for port, option in ((http_port, "--port"), (grpc_port, "--grpc-port")):
        _check_bindable(host, port, option)
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    from mlkit.serving.auth import token_file_option
    from mlkit.serving.server import run_server

    if no_watch:
        click.echo("warning: --no-watch is deprecated and will be removed in the next release; use --model-control "
                   "none", err=True)
        model_control = "none" if model_control == "poll" else model_control
    run_server(model_dir, http_port=http_port, grpc_port=grpc_port, host=host, max_batch_size=max_batch_size,
               max_latency_ms=max_latency_ms, num_threads=threads, instances=instances, max_payload_mb=max_payload_mb,
               poll_seconds=poll_seconds, graph_config=graph_config, graph_step=graph_step, access_log=access_log,
               response_delay_ms=response_delay_ms,
               model_control=model_control, auth_token_file=token_file_option(auth_token_file),
               max_queue=max_queue, queue_timeout_ms=queue_timeout_ms, keep_versions=keep_versions)


def _check_bindable(host: str, port: int, option: str) -> None:
    """A usage error now for a host that is not this machine's or a port in use, rather than a traceback from
    uvicorn or gRPC once the server is half up. (The port could still be taken in between: that is rare.)"""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise click.UsageError(f"--host {host!r} is not an address ({exc}); give an address of this machine, such as "
                               f"127.0.0.1, or 0.0.0.0 for every interface") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port in TIME_WAIT is free
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.UsageError(f"port {port} on {host} is in use; choose another {option}, or use `mlkit serve "
                                       f"start`, which picks a free port") from None
            raise click.UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); --host must be an address of "
                                   f"this machine, such as 127.0.0.1 or 0.0.0.0") from None


# --------------------------------------------------------------------------- detached local servers
@serve.command("start")
@click.argument("name", default="default")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Model repository to serve.")
@click.option("--port", "http_port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="HTTP port; a busy port (or 0) is replaced by a free one - use the printed URL.")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8081, show_default=True,
              help="v2 gRPC port (same rule).")
@click.option("--host", default="127.0.0.1", show_default=True)
@_model_options
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for the server to be ready.")
@click.option("--replace", is_flag=True, help="Stop a running server of the same name first.")
@friendly
def start_cmd(name, model_dir, http_port, grpc_port, host, max_batch_size, max_latency_ms, threads, instances,
              max_queue, queue_timeout_ms, keep_versions, model_control, auth_token_file, timeout, replace) -> None:
    """Start a detached server NAME (default: "default") that keeps running after this command."""
    from mlkit.serving import lifecycle
    from mlkit.serving.auth import token_file_option

    state = lifecycle.start(name, model_dir, http_port=http_port, grpc_port=grpc_port, host=host,
                            max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, threads=threads,
                            instances=instances, model_control=model_control,
                            auth_token_file=token_file_option(auth_token_file), timeout=timeout, replace=replace,
                            max_queue=max_queue, queue_timeout_ms=queue_timeout_ms, keep_versions=keep_versions)
    click.echo(f"server {name!r} ready at {state.url} (gRPC {state.grpc_url}, pid {state.pid}, log {state.log})")
    models = _served_models(state.url, state.auth_token_file)
    if models == []:
        click.echo(f"warning: it serves no model yet: {model_dir} has no loadable <name>/<version>/ folder; versions "
                   f"added there are loaded within seconds (see the log)", err=True)
    elif models:
        click.echo(f"models: {', '.join(models)}")
    click.echo(f"stop it with: mlkit serve stop {name}")


def _served_models(url: str, auth_token_file: str | None = None) -> list[str] | None:
    """The model names the server lists, or None if it cannot be asked."""
    import httpx

    from mlkit.serving.auth import bearer, read_token_file

    headers = {"Authorization": bearer(read_token_file(auth_token_file))} if auth_token_file else {}
    try:
        return list(httpx.get(f"{url}/v2/models", headers=headers, timeout=5).json()["models"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


@serve.command("stop")
@click.argument("name", default="default")
@click.option("--all", "stop_all", is_flag=True, help="Stop every recorded server.")
@click.option("--timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL.")
@friendly
def stop_cmd(name, stop_all, timeout) -> None:
    """Stop detached server NAME (default: "default") and forget it."""
    from mlkit.serving import lifecycle

    names = [s.name for s, _ in lifecycle.status()] if stop_all else [name]
    if not stop_all and lifecycle.get(name) is None:
        raise MlkitError(f"no server named {name!r} is recorded in {lifecycle.state_dir()}; see: mlkit serve status")
    for n in names:
        stopped = lifecycle.stop(n, timeout=timeout)
        click.echo(f"server {n!r} " + ("stopped" if stopped else "was not running; state removed"))


@serve.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def status_cmd(as_json) -> None:
    """List detached servers: name, pid, alive, URL, model folder."""
    import json

    from mlkit.serving import lifecycle

    rows = lifecycle.status()
    if as_json:
        click.echo(json.dumps([{**s.to_dict(), "alive": alive} for s, alive in rows], indent=2))
        return
    if not rows:
        click.echo(f"no servers recorded in {lifecycle.state_dir()}")
        return
    click.echo(f"{'name':<20} {'pid':>7} {'state':<7} {'url':<28} model_dir")
    for s, alive in rows:
        click.echo(f"{s.name:<20} {s.pid:>7} {'up' if alive else 'dead':<7} {s.url:<28} {s.model_dir}")


# --------------------------------------------------------------------------- KServe manifests / cluster
def _isvc_options(fn):
    options = [
        click.argument("name"),
        click.option("--storage-uri", required=True, metavar="URI",
                     help="Where the model repository is (s3://, gs://, pvc://, https://)."),
        click.option("--namespace", default="kubeflow", show_default=True),
        click.option("--image", default=None, metavar="IMAGE", help="Serving image [default: mlkit's image]."),
        click.option("--max-batch-size", type=click.IntRange(min=1), default=None,
                     help="KServe batcher and server batching: most instances per batch."),
        click.option("--max-latency-ms", type=click.IntRange(min=0), default=None,
                     help="KServe batcher: longest wait to fill a batch."),
        _THREADS,
        _INSTANCES,
        click.option("--cpu", default="1", show_default=True),
        click.option("--memory", default="1Gi", show_default=True),
        click.option("--min-replicas", type=click.IntRange(min=0), default=1, show_default=True),
        click.option("--raw", is_flag=True, help="RawDeployment mode (also exposes gRPC on 8081)."),
        click.option("--runtime", is_flag=True,
                     help="ServingRuntime + a modelFormat: tflite InferenceService instead of a custom container."),
        click.option("--cluster-runtime", is_flag=True, help="With --runtime: a ClusterServingRuntime."),
        click.option("--auth-secret", default=None, metavar="NAME",
                     help="Require a bearer token: mount Kubernetes Secret NAME (key 'token') and start the server "
                          "with --auth-token-file on it. Create it first: kubectl create secret generic NAME "
                          "--from-file=token=FILE."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _objects(name, storage_uri, namespace, image, max_batch_size, max_latency_ms, threads, instances, cpu, memory,
             min_replicas, raw, runtime, cluster_runtime, auth_secret) -> list:
    from mlkit.serving import manifests

    image = image or manifests.DEFAULT_IMAGE
    if runtime:
        if max_batch_size or max_latency_ms is not None or raw:
            raise MlkitError("--max-batch-size, --max-latency-ms and --raw apply to the custom-container form; "
                             "drop --runtime to use them")
        return [manifests.serving_runtime(manifests.DEFAULT_RUNTIME, image, cluster=cluster_runtime,
                                          namespace=namespace, cpu=cpu, memory=memory, auth_secret=auth_secret),
                manifests.tflite_inference_service(name, storage_uri, manifests.DEFAULT_RUNTIME, namespace=namespace,
                                                   min_replicas=min_replicas)]
    if cluster_runtime:
        raise MlkitError("--cluster-runtime needs --runtime")
    return [manifests.inference_service(name, storage_uri, image=image, namespace=namespace, cpu=cpu, memory=memory,
                                        max_batch_size=max_batch_size, max_latency_ms=max_latency_ms,
                                        threads=threads, instances=instances, min_replicas=min_replicas,
                                        deployment_mode="RawDeployment" if raw else "Serverless",
                                        auth_secret=auth_secret)]


@serve.command("manifest")
@_isvc_options
@friendly
def manifest_cmd(**options) -> None:
    """Print KServe YAML for InferenceService NAME (with --runtime: ServingRuntime + InferenceService).

    Apply it with `kubectl apply -f -`.
    """
    from mlkit.serving import manifests

    click.echo(manifests.to_yaml(*_objects(**options)), nl=False)


@serve.command("deploy")
@_isvc_options
@click.option("--no-wait", is_flag=True, help="Return once created, without waiting for Ready.")
@click.option("--timeout", type=click.IntRange(min=1), default=300, show_default=True)
@friendly
def deploy_cmd(no_wait, timeout, **options) -> None:
    """Create (or replace) InferenceService NAME on the cluster of your kubeconfig and wait until Ready.

    With --runtime the ServingRuntime must already be installed (`mlkit serve manifest ... --runtime`
    prints it; apply it once with kubectl).
    """
    from mlkit.serving import manifests

    isvc = _objects(**options)[-1]
    status = manifests.deploy(isvc, options["namespace"], wait=not no_wait, timeout=timeout)
    where = f"{status['namespace']}/{status['name']}"
    click.echo(f"InferenceService {where} " + (f"ready at {status['url']}" if status["ready"] else "created"))


@serve.command("delete")
@click.argument("name")
@click.option("--namespace", default="kubeflow", show_default=True)
@friendly
def delete_cmd(name, namespace) -> None:
    """Delete InferenceService NAME from the cluster of your kubeconfig."""
    from mlkit.serving import manifests

    manifests.delete(name, namespace)
    click.echo(f"InferenceService {namespace}/{name} deleted")
