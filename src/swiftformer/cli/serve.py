"""``swiftformer serve``: an HTTP inference server with dynamic batching (docs/serving.md)."""

from __future__ import annotations

import argparse

from .common import add_decode_argument, add_hub_arguments, classification_only, fail, hub_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder or hub id, e.g. MBZUAI/swiftformer-xs")
    p.add_argument("--model-name", help="the model's name in /v2/models/NAME (default: the last part of --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="as in predict: auto (default; bf16 where the CPU computes it natively, else fp32), fp32 or bf16",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "inductor", "openvino", "onnxruntime"),
        default="auto",
        help="as in predict: auto (default; per batch size from what is installed), inductor, openvino or onnxruntime",
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the fast path (compiled for each batch size at warm-up)"
    )
    p.add_argument("--max-batch-size", type=int, default=8, help="most images per forward pass (default 8)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long the first image of a batch waits for others still being decoded (default 5)",
    )
    p.add_argument(
        "--max-queue", type=int, default=64, help="most images admitted and not yet answered; then 503 (default 64)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest request body in MB; then 413 (default 20)"
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=50_000_000,
        help="largest width×height an image may claim, checked before decoding; then 413 (default 50000000)",
    )
    p.add_argument(
        "--decode-threads",
        type=int,
        help="threads decoding and preprocessing uploads beside the model thread (default: the cores this "
        "process may run on, from its affinity mask)",
    )
    add_limit_arguments(p)
    add_decode_argument(p)
    p.add_argument("--ray", action="store_true", help="deploy on Ray Serve instead (pip install .[ray])")
    p.add_argument("--address", help="with --ray: the Ray cluster to join (default: start a local one)")
    p.add_argument("--replicas", type=int, default=1, help="with --ray: model replicas (default 1)")
    p.add_argument(
        "--num-cpus-per-replica", type=float, default=1.0, help="with --ray: CPUs reserved per replica (default 1)"
    )
    add_hub_arguments(p)


def add_limit_arguments(p: argparse.ArgumentParser) -> None:
    """What bounds the server's resources (docs/serving.md, "Limits")."""
    p.add_argument(
        "--max-inflight-mb",
        type=float,
        default=100.0,
        help="request bodies held at once, by Content-Length before reading; then 503 (default 100)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="open connections; past it the oldest idle one is closed, or 503 (default 256)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds to send a request's headers; then closed (default 10)",
    )
    p.add_argument(
        "--body-timeout", type=float, default=60.0, help="seconds to send a request's body; then 408 (default 60)"
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host header name to answer besides localhost, 127.0.0.1, [::1] and --host (repeatable; '*': any)",
    )


def check(args: argparse.Namespace) -> str | None:
    """The conflicting- or bad-options message, or None."""
    if args.compile and args.backend in ("openvino", "onnxruntime"):
        return f"--compile is for the inductor backend; --backend {args.backend} compiles the model itself"
    for option, low in (
        ("max_batch_size", 1),
        ("max_queue", 1),
        ("replicas", 1),
        ("max_image_pixels", 1),
        ("max_connections", 1),
    ):
        if getattr(args, option) < low:
            return f"--{option.replace('_', '-')} must be at least {low}, got {getattr(args, option)}"
    for option in ("max_upload_mb", "num_cpus_per_replica", "header_timeout", "body_timeout"):
        if not getattr(args, option) > 0:
            return f"--{option.replace('_', '-')} must be positive, got {getattr(args, option)}"
    if args.decode_threads is not None and args.decode_threads < 1:
        return f"--decode-threads must be at least 1, got {args.decode_threads}"
    if args.max_inflight_mb < args.max_upload_mb:
        return f"--max-inflight-mb ({args.max_inflight_mb:g}) must be at least --max-upload-mb ({args.max_upload_mb:g})"
    if args.max_wait_ms < 0:
        return f"--max-wait-ms must be at least 0, got {args.max_wait_ms}"
    if not 0 <= args.port <= 65535:
        return f"--port must be in 0..65535, got {args.port}"
    if not args.ray and (args.address or args.replicas != 1 or args.num_cpus_per_replica != 1.0):
        return "--address, --replicas and --num-cpus-per-replica go with --ray"
    return None


def run(args: argparse.Namespace) -> int:
    classification_only(args.model, "serve")
    problem = check(args)
    if problem:
        return fail(problem)
    from ..serving import ServeSettings

    settings = ServeSettings(
        model=args.model,
        model_name=args.model_name,
        hub=hub_options(args),
        host=args.host,
        port=args.port,
        precision=args.precision,
        backend=args.backend,
        compile=args.compile,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_upload_mb=args.max_upload_mb,
        max_image_pixels=args.max_image_pixels,
        fast_decode=not args.exact_decode,
        **({} if args.decode_threads is None else {"decode_threads": args.decode_threads}),
        max_inflight_mb=args.max_inflight_mb,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        allowed_hosts=tuple(args.allowed_host),
    )
    if args.ray:
        from ..serving.ray_serve import serve_on_ray

        return serve_on_ray(
            settings, address=args.address, replicas=args.replicas, num_cpus_per_replica=args.num_cpus_per_replica
        )
    from ..serving import serve

    return serve(settings)
