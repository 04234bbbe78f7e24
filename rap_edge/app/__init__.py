"""The application layer: one settings object and one session that every front end drives.

:class:`Settings` is validated once, whether it comes from CLI flags, ``RAP_EDGE_*``
environment variables, ROS parameters or a YAML file. :meth:`Session.open` loads the models,
thresholds and memory it names and owns the operations every front end needs: recognise a
frame, embed pending reference images, add / update / remove a concept with rollback, enroll
an unknown cluster, ask, describe; :meth:`Session.strangers` opens the unknown-face
clusters (:class:`LiveClusters`) that the live runtime fills and every front end names.
"""

from __future__ import annotations

from rap_edge.app._session import THRESHOLDS_FILE, Answer, Session, find_thresholds
from rap_edge.app._settings import ENV_PREFIX, PROVIDERS, RUNTIME_FIELDS, Settings
from rap_edge.app._strangers import DEFAULT_MAX_MB, DEFAULT_RETENTION_DAYS, LiveClusters

__all__ = [
    "DEFAULT_MAX_MB",
    "DEFAULT_RETENTION_DAYS",
    "ENV_PREFIX",
    "PROVIDERS",
    "RUNTIME_FIELDS",
    "THRESHOLDS_FILE",
    "Answer",
    "LiveClusters",
    "Session",
    "Settings",
    "find_thresholds",
]
