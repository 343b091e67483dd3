"""Pages as a person's browser shows them: Debian's Chromium, headless, with the internet cut off.

:func:`render` loads a URL, lets its scripts run (the page's fetches included) and returns the DOM they
built, with every URL the page asked the network for. Nothing can leave the machine: every host name
but 127.0.0.1 resolves to nothing, and any request not to loopback goes to a proxy on a closed local
port. A page that needs a CDN renders blank here, as on a data platform without internet.

``scripts/setup.sh`` installs ``chromium``; without it the tests that use this fail (they never skip).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

RENDER_TIMEOUT_S = 90.0
#: Virtual time the page gets to run: it only advances while no request is in flight.
VIRTUAL_TIME_BUDGET_MS = 15_000
FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",  # loopback is never proxied; nothing else gets anywhere
]


@dataclass(frozen=True)
class RenderedPage:
    dom: str
    #: Every URL the page (its frame, scripts, styles, fetches) asked the network for, in order.
    requests: list[str]


def render(url: str, workdir: Path) -> RenderedPage:
    """Load ``url`` in a fresh profile under ``workdir`` and return the DOM once the page settled."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Chromium is not installed (Debian package chromium; scripts/setup.sh installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    net_log = workdir / "net-log.json"
    result = subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={workdir / 'profile'}",
            f"--log-net-log={net_log}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
    )
    assert result.returncode == 0, f"chromium exited with {result.returncode}:\n{result.stderr[-4000:]}"
    return RenderedPage(dom=result.stdout, requests=_page_requests(net_log, url))


def _page_requests(net_log: Path, url: str) -> list[str]:
    """The URLs of the requests Chromium's network stack started for the page at ``url``: the page
    itself, and every request the page initiated (its origin is the initiator). The browser's own
    background requests (updates, accounts, autofill) have no origin as initiator and are left out."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    jobs = [
        event["params"]
        for event in log["events"]
        if event["type"] == start_job and "url" in event.get("params", {})
    ]
    return [
        job["url"]
        for job in jobs
        if job.get("initiator") == origin or (job.get("request_type") == "main frame" and job["url"] == url)
    ]
