"""``rap-edge serve``: the web app and REST API (and MQTT) over one live session."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rap_edge.app._strangers import DEFAULT_MAX_MB
from rap_edge.cli._options import (
    add_generation_options,
    add_memory_option,
    add_model_options,
    add_object_options,
    add_stream_options,
    memory_path,
    open_session,
    stream_policy,
)

if TYPE_CHECKING:
    import argparse

__all__ = ["register"]

DEFAULT_PORT = 8765


def _read_password() -> str:
    """The new password: typed twice at a terminal, or one line on stdin."""
    from rap_edge.errors import InvalidInputError

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("new web password: ")
    if getpass.getpass("again: ") != first:
        msg = "the two passwords differ; nothing was changed"
        raise InvalidInputError(msg)
    return first


def cmd_serve(args: argparse.Namespace) -> int:
    from rap_edge.errors import InvalidInputError, StoreError

    try:
        from rap_edge.web import has_password, is_loopback, set_password
    except ImportError as err:  # pragma: no cover - the extra is missing
        msg = f"rap-edge serve needs the web extra: pip install 'rap-edge[web]' ({err})"
        raise StoreError(msg) from err
    memory = memory_path(args)
    if not memory.is_dir():
        msg = f"no memory at {memory} (create one with `rap-edge memory init {memory}`)"
        raise InvalidInputError(msg)
    if args.set_password:
        path = set_password(memory, _read_password())
        print(f"web password set (scrypt hash in {path})", file=sys.stderr)
        return 0
    if not 0 < args.port < 65536:  # noqa: PLR2004
        msg = f"--port must be in 1..65535, got {args.port}"
        raise InvalidInputError(msg)
    policy = stream_policy(args)  # checked before anything is opened
    if args.retention_days <= 0:
        msg = f"--retention-days must be positive, got {args.retention_days}"
        raise InvalidInputError(msg)
    auth = not is_loopback(args.host)
    if auth and not has_password(memory):
        msg = (
            f"serving on {args.host} (beyond this machine) needs a password: set one with "
            f"`rap-edge serve --set-password --memory {memory}` first"
        )
        raise InvalidInputError(msg)
    mqtt_target = _mqtt_target(args.mqtt) if args.mqtt else None
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        msg = f"rap-edge serve needs the web extra: pip install 'rap-edge[web]' ({err})"
        raise StoreError(msg) from err
    from rap_edge.web import InstanceLock, Sightings, WebConfig, WebState, create_app

    lock = InstanceLock(memory)
    lock.acquire()
    state = None
    try:
        with open_session(args, memory="required", isolate=True) as session:
            assert session.memory is not None  # noqa: S101 - required
            clusters = None
            if not args.no_cluster:
                clusters = session.strangers(
                    retention_days=args.retention_days, max_mb=args.strangers_max_mb
                )
            sightings = Sightings(session.memory.path, retention_days=args.retention_days)
            mqtt = None
            if mqtt_target is not None:
                from rap_edge.web._mqtt import MqttBridge

                mqtt = MqttBridge(
                    *mqtt_target,
                    node=args.mqtt_node,
                    expire_s=args.presence_timeout,
                    memory=session.memory,
                )
            state = WebState(session, clusters=clusters, sightings=sightings, mqtt=mqtt)
            purged = state.purge()
            if any(purged.values()):
                print(
                    f"retention ({args.retention_days:g} days): deleted {purged['crops']} "
                    f"stranger crop(s) and {purged['sightings']} sighting(s)",
                    file=sys.stderr,
                )
            for spec in args.source or []:
                cam = state.add_source(spec, max_fps=args.max_fps, policy=policy)
                assert cam.source is not None  # noqa: S101 - opened
                print(f"camera {cam.name}: {cam.source.describe()}", file=sys.stderr)
            hosts: tuple[str, ...] = ()
            if not auth:  # DNS rebinding: only this machine's own names reach the app
                hosts = tuple(
                    f"{h}:{args.port}" for h in ("127.0.0.1", "localhost", "[::1]", args.host)
                )
            config = WebConfig(memory=session.memory.path, auth=auth, allowed_hosts=hosts)
            app = create_app(state, config)
            where = f"http://{args.host}:{args.port}/"
            print(
                f"serving {where} ({'password required' if auth else 'this machine only'}); "
                f"API docs at {where}api/docs; Ctrl+C stops",
                file=sys.stderr,
                flush=True,
            )
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=args.host,
                    port=args.port,
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=3,
                )
            )
            try:
                server.run()
            finally:
                state.close()
                state = None
            if not server.started:
                msg = f"cannot listen on {args.host}:{args.port} (in use, or not this machine's)"
                raise StoreError(msg)
    finally:
        if state is not None:
            state.close()
        lock.release()
    return 0


def _mqtt_target(text: str) -> tuple[str, int]:
    from rap_edge.errors import InvalidInputError

    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:  # noqa: PLR2004
        msg = f"--mqtt must be HOST:PORT, got {text!r}"
        raise InvalidInputError(msg)
    return host.strip("[]"), int(port)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve``."""
    p = sub.add_parser(
        "serve",
        help="web app and REST API for the family (and MQTT for Home Assistant)",
        description="Serves pages to enroll people from a phone, name strangers, watch the "
        "cameras and ask questions, plus a REST API under /api/ (OpenAPI at /api/docs), over "
        "one live session. Binds to 127.0.0.1 by default; any other address needs a password "
        "(--set-password).",
    )
    p.add_argument(
        "--source",
        action="append",
        metavar="SOURCE",
        help="a camera, stream, video, image folder or rosbag2, as for `run`; repeat for "
        "several; NAME=SOURCE names it (default: its file name, camera<N> or the URL)",
    )
    add_memory_option(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8765)")
    p.add_argument(
        "--set-password",
        action="store_true",
        help="set the web password (typed twice, or one line on stdin), stored hashed in the "
        "memory folder, then exit",
    )
    p.add_argument(
        "--max-fps",
        type=float,
        default=10.0,
        help="frames per second taken from each source (cameras drop the rest; default 10)",
    )
    p.add_argument("--no-cluster", action="store_true", help="do not cluster unknown faces")
    p.add_argument(
        "--retention-days",
        type=float,
        default=14.0,
        metavar="N",
        help="delete stranger crops and sightings older than N days (default 14; applied "
        "at start and every hour)",
    )
    p.add_argument(
        "--strangers-max-mb",
        type=float,
        default=DEFAULT_MAX_MB,
        metavar="MB",
        help=f"storage cap of the stranger crops: past it the oldest are deleted "
        f"(default {DEFAULT_MAX_MB:g})",
    )
    p.add_argument(
        "--mqtt",
        metavar="HOST:PORT",
        default=None,
        help="publish presence and recognition events to this MQTT broker, with Home "
        "Assistant discovery",
    )
    p.add_argument(
        "--mqtt-node",
        default="rap_edge",
        metavar="ID",
        help="MQTT node id: topics are rap_edge/ID/... (default rap_edge)",
    )
    p.add_argument(
        "--presence-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="a person's presence on a camera turns off after S seconds unseen (default 30)",
    )
    p.add_argument(
        "--embed-every",
        type=int,
        default=None,
        help="re-embed a tracked face at least every N frames (default 10; 1: every frame)",
    )
    p.add_argument(
        "--no-track",
        action="store_true",
        help="treat every frame on its own (no tracks, no reuse, no vote)",
    )
    p.add_argument(
        "--describe",
        action="store_true",
        default=None,
        help="describe each camera's scene in words when the recognised set changes",
    )
    p.add_argument(
        "--describe-every",
        type=float,
        default=None,
        metavar="S",
        help="with --describe, also describe every S seconds",
    )
    add_generation_options(p)
    add_stream_options(p)
    add_model_options(p)
    add_object_options(p)
    p.set_defaults(func=cmd_serve)
