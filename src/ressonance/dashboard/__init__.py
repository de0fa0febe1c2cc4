"""The operator dashboard: static files (HTML, CSS, JavaScript, an SVG icon) served by the admin
listener at ``/`` (``index.html``), ``/login`` (``login.html``) and ``/static/<name>``.

No build step and nothing fetched from the internet: the page is vanilla JavaScript that polls
the admin JSON API (``/api/overview``, ``/api/apps``, ...) and draws its charts on ``<canvas>``.
Every value coming from the server (tenant channel names, event data) is inserted as text.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
