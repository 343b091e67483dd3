"""The hostname a task instance records: the machine's name, and the Celery worker's when several share it.

Airflow stores ``[core] hostname_callable()`` on every task instance (the grid and the REST API show it)
and fetches a running task's log from that host. One worker per machine needs nothing more than the
machine's name; when several Celery workers run on one machine (``make cluster``), each is started with
``PIPELINES_WORKER_NAME`` and its tasks record ``<worker>@<machine>``, Celery's own node naming, so
which worker ran a task stays visible. Set with ``AIRFLOW__CORE__HOSTNAME_CALLABLE=
include.common.hostname.worker_hostname``.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME_ENV = "PIPELINES_WORKER_NAME"


def worker_hostname() -> str:
    """``<worker>@<fqdn>`` inside a named worker, the machine's fully qualified name elsewhere."""
    machine = socket.getfqdn()
    worker = os.environ.get(WORKER_NAME_ENV, "").strip()
    return f"{worker}@{machine}" if worker else machine
