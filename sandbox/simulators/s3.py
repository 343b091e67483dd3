"""A local S3 store: moto's S3 server on 127.0.0.1, speaking the real S3 protocol over HTTP.

The embedded demo keeps the ``dwh_s3`` objects here, and the tests drive :mod:`include.dwh.s3` against
it through a real boto3 client, so signing, streaming bodies, multipart uploads and conditional writes
go over sockets exactly as they would to S3. In-process::

    with serve_s3() as endpoint_url:
        create_bucket(endpoint_url, "dwh", versioned=True)
        client = s3_client(endpoint_url)

Standalone (the first line on stdout is ``{"endpoint_url", "bucket", "airflow_conn_dwh_s3"}``, whose
last member is the value to export as ``AIRFLOW_CONN_DWH_S3``; SIGINT/SIGTERM stops it)::

    python -m sandbox.simulators.s3 --port 19000 --bucket dwh

Moto keeps every object in the process's memory and forgets them when the process ends. Its state is
global to the process: two servers started in one process share their buckets, so tests isolate
themselves with a bucket of their own rather than a server of their own. The server is threaded (one
thread per connection) and moto's S3 backend serves concurrent requests on distinct keys safely.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

from include.dwh.config import S3_CONN_ID

if TYPE_CHECKING:
    from botocore.client import BaseClient

# Moto accepts any credentials; these only have to be the same on the client and in the connection.
ACCESS_KEY_ID = "sandbox"
SECRET_ACCESS_KEY = "sandbox-secret"
REGION = "us-east-1"
DEFAULT_BUCKET = "dwh"


@contextlib.contextmanager
def serve_s3(port: int = 0, *, host: str = "127.0.0.1", log_requests: bool = False) -> Generator[str]:
    """Serve S3 on ``host`` (a free port by default) until the block ends; yield the endpoint URL.

    The server logs each request through the ``werkzeug`` logger at INFO; unless ``log_requests``,
    that logger is raised to WARNING when nobody has configured it, so tests and the embedded demo
    do not print a line per S3 call.
    """
    from moto.server import ThreadedMotoServer

    werkzeug_log = logging.getLogger("werkzeug")
    if not log_requests and werkzeug_log.level == logging.NOTSET:
        werkzeug_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        host, bound_port = server.get_host_and_port()
        yield f"http://{host}:{bound_port}"
    finally:
        server.stop()  # werkzeug closes the listening socket when serve_forever returns


def s3_client(endpoint_url: str) -> BaseClient:
    """A boto3 S3 client for the local store, with the sandbox credentials."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def create_bucket(endpoint_url: str, bucket: str, *, versioned: bool = False) -> None:
    """Create ``bucket`` (an existing one is kept); ``versioned`` turns on S3 object versioning,
    under which every write answers a ``VersionId``."""
    client = s3_client(endpoint_url)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    if versioned:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def airflow_connection(endpoint_url: str, bucket: str) -> dict[str, Any]:
    """The ``aws`` Airflow connection (JSON form of ``AIRFLOW_CONN_<ID>``) for a bucket of this store."""
    return {
        "conn_type": "aws",
        "login": ACCESS_KEY_ID,
        "password": SECRET_ACCESS_KEY,
        "extra": {"endpoint_url": endpoint_url, "region_name": REGION, "bucket_name": bucket},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local S3 store (moto).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help="created at start")
    parser.add_argument("--versioned", action="store_true", help="enable versioning on the bucket")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with serve_s3(args.port, host=args.host, log_requests=True) as endpoint_url:
        create_bucket(endpoint_url, args.bucket, versioned=args.versioned)
        connection = airflow_connection(endpoint_url, args.bucket)
        print(
            json.dumps(
                {
                    "endpoint_url": endpoint_url,
                    "bucket": args.bucket,
                    f"airflow_conn_{S3_CONN_ID}": json.dumps(connection),
                }
            ),
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
