"""The dwh_helper plugin's embedded stand-ins, on the ports of the default connections.

``airflow_settings.yaml`` points ``dwh_s3`` at an S3 server on :19000 (bucket ``dwh``; ``chatbot_backups``
uses its bucket ``chatbot-backups``),
``appmetrica_api`` at :18766 and ``amplitude_web`` / ``amplitude_mobile`` at :18767. The demo runs them
for its own calls; ``make dwh-sandbox`` (``python -m sandbox.dwh_sandbox``) serves them until
interrupted, for ``make airflow``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Generator
from dataclasses import dataclass

from sandbox.simulators.amplitude import AmplitudeSimulator
from sandbox.simulators.appmetrica import AppMetricaSimulator
from sandbox.simulators.s3 import create_bucket, serve_s3

S3_PORT, APPMETRICA_PORT, AMPLITUDE_PORT = 19000, 18766, 18767
BUCKET = "dwh"
#: The bucket of the default ``chatbot_backups`` connection (chatbot_maintenance's backups).
CHATBOT_BACKUP_BUCKET = "chatbot-backups"


@dataclass(frozen=True)
class Sandbox:
    s3_endpoint: str
    appmetrica_url: str
    amplitude_url: str


@contextlib.contextmanager
def serve_all() -> Generator[Sandbox]:
    """Serve the three stand-ins on their fixed ports until the block ends."""
    with (
        serve_s3(S3_PORT) as s3_endpoint,
        AppMetricaSimulator(ready_after_polls=1).serve(APPMETRICA_PORT) as appmetrica_url,
        AmplitudeSimulator(events_per_hour=20, parts_per_hour=2).serve(AMPLITUDE_PORT) as amplitude_url,
    ):
        create_bucket(s3_endpoint, BUCKET)
        create_bucket(s3_endpoint, CHATBOT_BACKUP_BUCKET)
        yield Sandbox(s3_endpoint, appmetrica_url, amplitude_url)


def main() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with serve_all() as sandbox:
        print(
            f"S3 {sandbox.s3_endpoint} (buckets {BUCKET}, {CHATBOT_BACKUP_BUCKET}), AppMetrica {sandbox.appmetrica_url}, "
            f"Amplitude {sandbox.amplitude_url}; Ctrl-C stops them",
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
