"""The web app: ``rap-edge serve`` (pages for the family, a REST API, MQTT for Home Assistant).

One more thin front end over the same :class:`~rap_edge.app.Session` and
:class:`~rap_edge.live.LiveRuntime`: cameras feed the runtime from their own reader threads,
edits go through the session. FastAPI, uvicorn and paho-mqtt (the ``web`` extra) are imported
only when the app is made. See docs/web.md.
"""

from __future__ import annotations

from rap_edge.app._strangers import DEFAULT_RETENTION_DAYS, LiveClusters
from rap_edge.web._app import WebConfig, create_app, error_status, is_loopback
from rap_edge.web._auth import InstanceLock, has_password, set_password, verify_password
from rap_edge.web._sightings import Sighting, Sightings, parse_last_seen_question
from rap_edge.web._state import Camera, WebState, camera_name
from rap_edge.web._uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, decode_upload, sniff_image

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "Camera",
    "InstanceLock",
    "LiveClusters",
    "Sighting",
    "Sightings",
    "WebConfig",
    "WebState",
    "camera_name",
    "create_app",
    "decode_upload",
    "error_status",
    "has_password",
    "is_loopback",
    "parse_last_seen_question",
    "set_password",
    "sniff_image",
    "verify_password",
]
