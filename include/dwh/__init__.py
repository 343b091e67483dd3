"""The business logic of the DWH helper service, shared by the ``dwh_helper`` plugin and the export DAGs.

``tables`` defines the seven DWH tables, ``validation`` the rules every written row obeys (derived
from the tables), ``batch_writer`` the chunked, all-or-nothing writer and the paged reader. The S3,
AppMetrica and Amplitude clients live beside them. Nothing here touches Airflow's task context.
"""
