"""Restore a chatbot backup (see :mod:`include.chatbot.backup`) into a database and a DuckDB file.

    python -m include.chatbot.restore --list
    python -m include.chatbot.restore --stamp 20260302T030000Z --database chatbot_restored \\
        --duckdb restored.duckdb
    make chatbot-restore ARGS="--latest --database chatbot_restored --duckdb restored.duckdb"

PostgreSQL: ``pg_restore --clean --if-exists --no-owner`` into ``--database`` on the server of the
``chatbot_postgres`` connection (created when missing), as that connection's user; restoring over the
live database needs ``--database`` to name it explicitly. DuckDB: the file is checked against the
manifest's SHA-256 and moved into place atomically (an existing file only with ``--force``). Both row
counts are compared with the manifest's; a difference is an error. The objects come from the
``chatbot_backups`` connection.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import sqlalchemy as sa

from include.chatbot.backup import (
    DUCKDB_OBJECT,
    MANIFEST_OBJECT,
    POSTGRES_OBJECT,
    BackupError,
    PgTarget,
    backup_key,
    complete_backups,
    postgres_rows,
    run_pg_tool,
)
from include.chatbot.config import BACKUP_PREFIX


def _download(store, key: str, dest: Path) -> str:
    digest = hashlib.sha256()
    with store.download(key) as body, dest.open("wb") as f:
        for chunk in body.chunks():
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def ensure_database(engine: sa.Engine, database: str) -> bool:
    """Create ``database`` on the engine's server when missing; True when it was created."""
    admin = sa.create_engine(engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}):
                return False
            conn.execute(sa.text(f"CREATE DATABASE \"{database}\" ENCODING 'UTF8'"))
            return True
    finally:
        admin.dispose()


def restore_backup(
    store,
    engine: sa.Engine,
    stamp: str,
    workdir: Path,
    *,
    database: str,
    duckdb_file: Path | None = None,
    force: bool = False,
    prefix: str = BACKUP_PREFIX,
) -> dict:
    """Restore backup ``stamp``: PostgreSQL into ``database`` (on ``engine``'s server), the analytics
    file to ``duckdb_file`` (skipped when None); returns the restored row counts."""
    if database == engine.url.database and not force:
        raise BackupError(f"{database!r} is the connection's own database: pass --force to restore over it")
    if duckdb_file is not None and duckdb_file.exists() and not force:
        raise BackupError(f"{duckdb_file} exists: pass --force to replace it")
    manifest_path = workdir / MANIFEST_OBJECT
    _download(store, backup_key(stamp, MANIFEST_OBJECT, prefix), manifest_path)
    manifest = json.loads(manifest_path.read_text())
    objects = manifest["objects"]

    dump = workdir / POSTGRES_OBJECT
    if _download(store, objects[POSTGRES_OBJECT]["key"], dump) != objects[POSTGRES_OBJECT]["sha256"]:
        raise BackupError(f"{POSTGRES_OBJECT} of {stamp} does not match its manifest checksum")
    created = ensure_database(engine, database)
    target = PgTarget.from_engine(engine, database)
    run_pg_tool(
        target,
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--exit-on-error",
            "--dbname",
            database,
            str(dump),
        ],
    )
    restored = sa.create_engine(engine.url.set(database=database))
    try:
        pg_rows = postgres_rows(restored)
    finally:
        restored.dispose()
    if pg_rows != manifest["postgres_rows"]:
        raise BackupError(
            f"restored row counts {pg_rows} differ from the backup's {manifest['postgres_rows']}"
        )
    result = {"stamp": stamp, "database": database, "created": created, "postgres_rows": pg_rows}

    if duckdb_file is not None and DUCKDB_OBJECT in objects:
        from include.chatbot.backup import snapshot_duckdb

        copy = workdir / DUCKDB_OBJECT
        if _download(store, objects[DUCKDB_OBJECT]["key"], copy) != objects[DUCKDB_OBJECT]["sha256"]:
            raise BackupError(f"{DUCKDB_OBJECT} of {stamp} does not match its manifest checksum")
        duck_rows = snapshot_duckdb(copy, workdir / "verified.duckdb")
        if duck_rows != manifest.get("duckdb_rows"):
            raise BackupError(
                f"DuckDB row counts {duck_rows} differ from the backup's {manifest['duckdb_rows']}"
            )
        duckdb_file.parent.mkdir(parents=True, exist_ok=True)
        staged = duckdb_file.with_name(f".{duckdb_file.name}.restoring")
        shutil.move(copy, staged)
        os.replace(staged, duckdb_file)
        result.update(duckdb=str(duckdb_file), duckdb_rows=duck_rows)
    return result


def main(argv: list[str] | None = None) -> int:
    from include.chatbot.config import BACKUP_CONN_ID, POSTGRES_CONN_ID
    from include.common.db import engine_for, sqlite_path
    from include.common.workdir import work_directory
    from include.dwh.s3 import S3Store

    parser = argparse.ArgumentParser(
        prog="python -m include.chatbot.restore", description=__doc__.split("\n")[0]
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--list", action="store_true", help="list the complete backups and exit")
    which.add_argument("--stamp", help="the backup to restore (YYYYMMDDTHHMMSSZ)")
    which.add_argument("--latest", action="store_true", help="restore the newest complete backup")
    parser.add_argument("--database", help="target PostgreSQL database (created when missing)")
    parser.add_argument("--duckdb", help="target DuckDB file (relative: under PIPELINES_DATA_DIR)")
    parser.add_argument("--force", action="store_true", help="replace an existing file / the live database")
    parser.add_argument("--conn-id", default=POSTGRES_CONN_ID, help="PostgreSQL server and credentials")
    parser.add_argument("--backup-conn-id", default=BACKUP_CONN_ID)
    parser.add_argument("--prefix", default=BACKUP_PREFIX)
    args = parser.parse_args(argv)

    store = S3Store.from_connection(args.backup_conn_id)
    stamps = complete_backups(store, args.prefix)
    if args.list:
        print("\n".join(stamps) if stamps else "no complete backups")
        return 0
    stamp = stamps[-1] if args.latest and stamps else args.stamp
    if not stamp or stamp not in stamps:
        print(f"no complete backup {stamp!r} under {args.prefix}/", file=sys.stderr)
        return 2
    if not args.database:
        parser.error("--database is required to restore")
    engine = engine_for(args.conn_id)
    try:
        with work_directory(None, "chatbot-restore-") as workdir:
            result = restore_backup(
                store,
                engine,
                stamp,
                workdir,
                database=args.database,
                duckdb_file=sqlite_path(args.duckdb) if args.duckdb else None,
                force=args.force,
                prefix=args.prefix,
            )
    except BackupError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
