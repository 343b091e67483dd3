"""Alembic environment and revisions of the chatbot's PostgreSQL schema (see :mod:`include.chatbot.alembic_cli`)."""
