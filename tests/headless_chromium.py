"""How the browser tests start Debian's Chromium (`make browser` installs it): headless through Playwright,
never `playwright install`. No network, no GPU, nothing the browser fetches or syncs on its own (the build
machines' closed network refuses those connections); --no-sandbox because CI runs as root."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("SKINGENBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
