"""The WhatsApp chatbot's databases: PostgreSQL (operational) and DuckDB (analytics), run from Airflow."""
