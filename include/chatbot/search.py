"""Semantic search over the chatbot's copied messages: ``python -m include.chatbot.search "query"``.

Opens the DuckDB file of connection ``chatbot_duckdb`` (or ``--duckdb PATH``) read-only and prints the
closest messages as JSON lines, most similar first. The query is embedded with the same model the
``chatbot_analytics`` DAG used (WordLlama, or the hashing fallback where it is not installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from include.chatbot.duckdb_store import connect, schema_version
from include.chatbot.embeddings import load_embedder, search


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m include.chatbot.search", description=__doc__.splitlines()[0]
    )
    parser.add_argument("query")
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--duckdb", help="the DuckDB file (default: connection chatbot_duckdb)")
    options = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if options.duckdb:
        path = options.duckdb
    else:
        from include.chatbot.config import duckdb_path

        path = duckdb_path()
    if not Path(path).exists():
        parser.exit(2, f"{path} does not exist: run the chatbot_db_init and chatbot_analytics DAGs first\n")
    with connect(path, read_only=True) as duck:
        if schema_version(duck) < 1:
            parser.exit(2, f"{path} has no chatbot tables: run the chatbot_analytics DAG first\n")
        for hit in search(duck, options.query, load_embedder(), options.limit):
            print(json.dumps(hit, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
