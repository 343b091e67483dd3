"""Callio call-center API -> warehouse (BigQuery, or embedded DuckDB): the Callio loader it replaces."""
