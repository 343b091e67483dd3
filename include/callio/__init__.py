"""Callio call-center API -> warehouse (BigQuery, or embedded DuckDB): seed 001."""
