"""``swiftformer serve``: an HTTP inference server with dynamic batching (docs/serving.md)."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from ..serving.auth import ADMIN_KEYS_ENV, API_KEYS_ENV
from .common import add_decode_argument, add_hub_arguments, as_flags, fail, hub_options

# The settings' parameters that the library's messages name, as this command's flags (cli.common.as_flags).
FLAGS = {
    "api_keys": "--api-key",
    "admin_keys": "--admin-key",
    "insecure": "--insecure",
    "grpc_port": "--grpc-port",
    "ssl_certfile": "--ssl-certfile",
    "ssl_keyfile": "--ssl-keyfile",
}
if TYPE_CHECKING:
    from ..serving.settings import ModelSettings, RayAutoscaling


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME[@VERSION]=]PATH[,OPTION...]",
        help="a model to serve (repeatable; the first is /predict's default): a folder, a folder of numbered "
        "version folders (PATH/1, PATH/2), a hub id or a variant name (xs: random weights); NAME defaults to the "
        "last part of PATH; options precision=P, backend=B, compile override the flags below for this model",
    )
    p.add_argument(
        "--model-workers",
        type=int,
        help="threads running every model's forward passes (default: the cores divided by torch's threads per "
        "forward pass, at least 1)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="as in predict, for every model without its own: auto (default; bf16 where the CPU computes it "
        "natively, else fp32), fp32 or bf16",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "inductor", "openvino", "onnxruntime"),
        default="auto",
        help="as in predict, for every model without its own: auto (default; per batch size from what is "
        "installed), inductor, openvino or onnxruntime",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile every model's fast path (compiled for each batch size at warm-up)",
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
        help="threads decoding and preprocessing uploads beside the model workers (default: the cores this "
        "process may run on, from its affinity mask)",
    )
    add_limit_arguments(p)
    add_access_arguments(p)
    add_decode_argument(p)
    p.add_argument("--ray", action="store_true", help="deploy on Ray Serve instead (pip install .[ray])")
    p.add_argument("--address", help="with --ray: the Ray cluster to join (default: start a local one)")
    p.add_argument("--replicas", type=int, help="with --ray: model replicas (default 1; or --autoscale)")
    p.add_argument(
        "--num-cpus-per-replica", type=float, default=1.0, help="with --ray: CPUs reserved per replica (default 1)"
    )
    add_autoscale_arguments(p)
    add_hub_arguments(p)


def add_autoscale_arguments(p: argparse.ArgumentParser) -> None:
    """Ray Serve autoscaling (docs/serving.md, "Autoscaling"); the defaults are ``RayAutoscaling``'s."""
    p.add_argument(
        "--autoscale",
        metavar="MIN,MAX",
        help="with --ray, instead of --replicas: between MIN (at least 1) and MAX replicas, keeping each about "
        "--max-batch-size requests busy",
    )
    p.add_argument(
        "--upscale-delay",
        type=float,
        metavar="S",
        help="with --autoscale: seconds of overload before a replica is added (default 5)",
    )
    p.add_argument(
        "--downscale-delay",
        type=float,
        metavar="S",
        help="with --autoscale: seconds of underload before a replica is removed (default 60)",
    )
    p.add_argument(
        "--look-back-period",
        type=float,
        metavar="S",
        help="with --autoscale: seconds the load is averaged over, more than Ray's 10 s report interval (default 15)",
    )


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


def add_access_arguments(p: argparse.ArgumentParser) -> None:
    """gRPC, API keys and TLS (docs/serving.md, "gRPC" and "Access control and TLS")."""
    p.add_argument(
        "--grpc-port",
        type=int,
        metavar="PORT",
        help="also serve the v2 protocol over gRPC on this port (0: a free one, logged; default: no gRPC)",
    )
    p.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"a key clients send as 'Authorization: Bearer KEY' (repeatable; also {API_KEYS_ENV}, comma-separated)",
    )
    p.add_argument("--api-key-file", action="append", default=[], metavar="FILE", help="API keys, one a line")
    p.add_argument(
        "--admin-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"a key for /v2/repository/... (repeatable; also {ADMIN_KEYS_ENV}); without one those routes answer 403",
    )
    p.add_argument("--admin-key-file", action="append", default=[], metavar="FILE", help="admin keys, one a line")
    p.add_argument(
        "--protect-health",
        action="store_true",
        help="health, server metadata and /metrics need an API key too (default: open)",
    )
    p.add_argument("--ssl-certfile", metavar="FILE", help="PEM certificate (chain): HTTPS, and gRPC over TLS")
    p.add_argument("--ssl-keyfile", metavar="FILE", help="PEM private key of --ssl-certfile")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without an API key (anyone who reaches the port may use the model)",
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
        value = getattr(args, option)
        if value is not None and value < low:
            return f"--{option.replace('_', '-')} must be at least {low}, got {value}"
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
    if args.ray and (args.grpc_port is not None or args.ssl_certfile or args.ssl_keyfile):
        return (
            "--grpc-port, --ssl-certfile and --ssl-keyfile are for the built-in server: under --ray, Ray Serve's "
            "proxy holds the connections"
        )
    if not args.ray and (args.address or args.replicas or args.num_cpus_per_replica != 1.0 or args.autoscale):
        return "--address, --replicas, --num-cpus-per-replica and --autoscale go with --ray"
    if args.ray and len(args.model) > 1:
        return f"--ray serves one model; give one --model (got {len(args.model)})"
    if args.model_workers is not None and args.model_workers < 1:
        return f"--model-workers must be at least 1, got {args.model_workers}"
    return check_autoscale(args)


# NAME or NAME@VERSION before '=': a path's own '=' (runs/lr=0.1) has a '/' before it, so it is not a name.
_NAMED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})(?:@(?P<version>[0-9]+))?=(?P<rest>.+)")
MODEL_OPTIONS = ("precision", "backend", "compile")


def parse_model(spec: str, args: argparse.Namespace) -> ModelSettings:
    """``--model [NAME[@VERSION]=]PATH[,precision=P][,backend=B][,compile]`` as ModelSettings, the flags'
    precision, backend and compile for what it does not set. ValueError naming what is wrong."""
    from ..serving.settings import ModelSettings

    named = _NAMED.fullmatch(spec)
    name, version, rest = (named["name"], named["version"], named["rest"]) if named else (None, None, spec)
    path, *options = rest.split(",")
    chosen: dict[str, Any] = {"precision": args.precision, "backend": args.backend, "compile": args.compile}
    for option in options:
        key, _, value = option.partition("=")
        if key not in MODEL_OPTIONS or (key == "compile") == bool(value):
            raise ValueError(
                f"--model {spec}: unknown option {option!r} (options: precision=P, backend=B, compile; "
                "a path with a comma cannot be given here)"
            )
        chosen[key] = value or True
    return ModelSettings(path=path, name=name, version=int(version) if version else None, **chosen)


# RayAutoscaling's fields and the flags that set them (for its messages, through as_flags)
_AUTOSCALE_TIMING = {
    "upscale_delay_s": "--upscale-delay",
    "downscale_delay_s": "--downscale-delay",
    "look_back_period_s": "--look-back-period",
}
_AUTOSCALE_FLAGS = {"min_replicas": "--autoscale MIN", "max_replicas": "--autoscale MAX", **_AUTOSCALE_TIMING}


def check_autoscale(args: argparse.Namespace) -> str | None:
    """The message for bad or conflicting autoscaling options, or None."""
    if args.autoscale is None:
        given = [flag for flag in _AUTOSCALE_TIMING.values() if getattr(args, _dest(flag)) is not None]
        return f"{', '.join(given)}: only with --autoscale" if given else None
    if args.replicas is not None:
        return "--autoscale MIN,MAX and --replicas N exclude each other: give one"
    try:
        autoscaling(args)
    except ValueError as error:
        return as_flags(str(error), _AUTOSCALE_FLAGS)
    return None


def autoscaling(args: argparse.Namespace) -> RayAutoscaling | None:
    """``--autoscale MIN,MAX`` and its delays as :class:`RayAutoscaling` (None without ``--autoscale``).

    Raises:
        ValueError: not two whole numbers, or values RayAutoscaling refuses.
    """
    from ..serving.settings import RayAutoscaling

    if args.autoscale is None:
        return None
    match = re.fullmatch(r"\s*(-?\d+)\s*,\s*(-?\d+)\s*", args.autoscale)
    if match is None:
        raise ValueError(f"--autoscale takes MIN,MAX, two whole numbers such as 1,4; got {args.autoscale!r}")
    timing = {field: getattr(args, _dest(flag)) for field, flag in _AUTOSCALE_TIMING.items()}
    given = {field: value for field, value in timing.items() if value is not None}  # else RayAutoscaling's defaults
    return RayAutoscaling(int(match[1]), int(match[2]), **given)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def run(args: argparse.Namespace) -> int:
    problem = check(args)
    if problem:
        return fail(problem)
    from ..serving import ServeSettings
    from ..serving.auth import gather_keys

    settings = ServeSettings(
        models=tuple(parse_model(spec, args) for spec in args.model),
        hub=hub_options(args),
        host=args.host,
        port=args.port,
        model_workers=args.model_workers,
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
        grpc_port=args.grpc_port,
        api_keys=gather_keys(args.api_key, args.api_key_file, API_KEYS_ENV),
        admin_keys=gather_keys(args.admin_key, args.admin_key_file, ADMIN_KEYS_ENV),
        protect_health=args.protect_health,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        insecure=args.insecure,
    )
    if args.ray:
        from ..serving.ray_serve import serve_on_ray

        return serve_on_ray(
            settings,
            address=args.address,
            replicas=args.replicas or 1,
            num_cpus_per_replica=args.num_cpus_per_replica,
            autoscaling=autoscaling(args),
        )
    from ..serving import serve

    return serve(settings)
