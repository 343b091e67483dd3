"""The Asset the product ETL updates: DAGs that use products schedule on it.

Named without a URI scheme: a scheme would make Airflow load the providers' URI handlers (boto3 and
more) each time a DAG file that uses the Asset is parsed.
"""

from __future__ import annotations

from airflow.sdk import Asset

PRODUCTS = Asset(name="belle_ai.products")
