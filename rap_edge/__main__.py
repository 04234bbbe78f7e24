"""``python -m rap_edge`` runs the CLI."""

from __future__ import annotations

import sys

from rap_edge.cli import main

sys.exit(main())
