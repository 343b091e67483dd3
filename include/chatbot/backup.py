"""Backups of both chatbot databases to S3, and how many to keep.

The guide's backup is ``pg_dump`` of PostgreSQL and a copy of the DuckDB file. Here each backup is one
key prefix, ``<BACKUP_PREFIX>/<stamp>/`` with ``stamp`` the run's time as ``YYYYMMDDTHHMMSSZ``:

* ``postgres.dump``: ``pg_dump --format=custom`` (restored with ``pg_restore``);
* ``chatbot.duckdb``: the analytics file, copied after a ``CHECKPOINT`` while this process holds it
  (DuckDB allows one writer, and the task takes the ``chatbot_duckdb`` pool), so it is consistent;
* ``manifest.json``: written last, so a backup without one is incomplete; it lists each object's size
  and SHA-256 and the row counts at backup time, which the restore checks.

Stamps sort as time, so "keep the newest N" is a sort of the prefixes. The password reaches
``pg_dump`` through ``PGPASSWORD`` only: never the command line, a log line or the summary.
Never touches Airflow context.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from include.chatbot.config import BACKUP_PREFIX

log = logging.getLogger(__name__)

POSTGRES_OBJECT = "postgres.dump"
DUCKDB_OBJECT = "chatbot.duckdb"
MANIFEST_OBJECT = "manifest.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


class BackupError(RuntimeError):
    """A dump, restore or upload that did not complete; the message never contains a password."""


@dataclass(frozen=True)
class PgTarget:
    """Where ``pg_dump``/``pg_restore`` connect; the password goes to the environment only."""

    host: str
    port: int
    user: str
    database: str
    password: str | None = None

    @classmethod
    def from_engine(cls, engine: sa.Engine, database: str | None = None) -> PgTarget:
        url = engine.url
        return cls(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "postgres",
            database=database or url.database,
            password=url.password,
        )

    def args(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.port), "--username", self.user, "--no-password"]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def run_pg_tool(target: PgTarget, argv: list[str]) -> None:
    """Run a PostgreSQL client tool; its stderr (never the password) becomes the error."""
    result = subprocess.run(argv + target.args(), env=target.env(), capture_output=True, text=True)
    if result.returncode != 0:
        stderr = result.stderr.strip()
        if target.password:
            stderr = stderr.replace(target.password, "***")
        raise BackupError(f"{argv[0]} failed ({result.returncode}): {stderr}")


def stamp_of(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(STAMP_FORMAT)


def backup_key(stamp: str, name: str, prefix: str = BACKUP_PREFIX) -> str:
    return f"{prefix}/{stamp}/{name}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dump_postgres(target: PgTarget, dest: Path) -> None:
    run_pg_tool(target, ["pg_dump", "--format=custom", "--no-owner", "--file", str(dest), target.database])


def snapshot_duckdb(source: Path, dest: Path) -> dict:
    """A consistent copy of the analytics file: CHECKPOINT folds the WAL in, and the copy is taken
    while this connection still holds the file, so no writer can change it halfway."""
    from include.chatbot.duckdb_store import TABLES, connect

    with connect(source) as duck:
        duck.execute("CHECKPOINT")
        present = {r[0] for r in duck.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        rows = {t: duck.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES if t in present}
        shutil.copyfile(source, dest)
    return rows


def postgres_rows(engine: sa.Engine) -> dict:
    from include.chatbot.models import TABLES

    with engine.connect() as conn:
        return {t: conn.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in TABLES}


def create_backup(
    store,
    engine: sa.Engine,
    duckdb_file: Path | None,
    stamp: str,
    workdir: Path,
    *,
    prefix: str = BACKUP_PREFIX,
) -> dict:
    """Dump both databases into ``workdir`` and upload them under ``<prefix>/<stamp>/``.

    Re-running for the same stamp replaces that backup; the manifest goes last."""
    objects: dict[str, dict] = {}
    manifest: dict = {"stamp": stamp, "database": engine.url.database, "objects": objects}
    dump = workdir / POSTGRES_OBJECT
    dump_postgres(PgTarget.from_engine(engine), dump)
    manifest["postgres_rows"] = postgres_rows(engine)
    files = [dump]
    if duckdb_file is not None and duckdb_file.exists():
        copy = workdir / DUCKDB_OBJECT
        manifest["duckdb_rows"] = snapshot_duckdb(duckdb_file, copy)
        files.append(copy)
    for path in files:
        key = backup_key(stamp, path.name, prefix)
        with path.open("rb") as f:
            store.upload(key, f, content_type="application/octet-stream")
        objects[path.name] = {"key": key, "bytes": path.stat().st_size, "sha256": _sha256(path)}
    manifest_path = workdir / MANIFEST_OBJECT
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with manifest_path.open("rb") as f:
        store.upload(backup_key(stamp, MANIFEST_OBJECT, prefix), f, content_type="application/json")
    log.info("chatbot backup %s: %s", stamp, {k: v["bytes"] for k, v in objects.items()})
    return {"stamp": stamp, "prefix": f"{prefix}/{stamp}/", "objects": objects}


def list_backups(store, prefix: str = BACKUP_PREFIX) -> dict[str, list[str]]:
    """Every backup under ``prefix``: stamp -> its keys, oldest first."""
    backups: dict[str, list[str]] = {}
    token = None
    while True:
        page = store.list_objects(f"{prefix}/", continuation=token)
        for obj in page["objects"]:
            rest = obj["Key"][len(prefix) + 1 :]
            if "/" in rest:
                backups.setdefault(rest.split("/", 1)[0], []).append(obj["Key"])
        token = page.get("next_token")
        if not token:
            break
    return dict(sorted(backups.items()))


def complete_backups(store, prefix: str = BACKUP_PREFIX) -> list[str]:
    """Stamps of the backups whose manifest was written, oldest first."""
    return [
        stamp
        for stamp, keys in list_backups(store, prefix).items()
        if backup_key(stamp, MANIFEST_OBJECT, prefix) in keys
    ]


def prune_backups(store, keep: int, prefix: str = BACKUP_PREFIX) -> dict:
    """Delete every backup but the newest ``keep`` complete ones (and incomplete ones older than
    those, left by a failed run)."""
    if keep < 1:
        raise ValueError("backup_keep must be at least 1: the backup just made is always kept")
    backups = list_backups(store, prefix)
    kept = complete_backups(store, prefix)[-keep:]
    oldest_kept = kept[0] if kept else None
    deleted = []
    for stamp, keys in backups.items():
        if stamp in kept or oldest_kept is None or stamp > oldest_kept:
            continue
        for key in keys:
            store.delete(key)
        deleted.append(stamp)
    return {"kept": kept, "deleted": deleted}
