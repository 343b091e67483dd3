"""The DWH helper service as Flask blueprints for Airflow's API server.

``dwh_helper.app.api`` is the parent blueprint (``/dwh-helper``) to list in the AirflowPlugin's
``flask_blueprints``; ``dwh_helper.app.create_app`` serves it from a plain Flask app.
``dwh_helper.services`` holds the dependencies every endpoint group gets. The work itself is done in
``include.dwh``, which the export DAGs share.

This file imports nothing: Airflow's plugin loader executes every ``.py`` file under ``plugins/`` on
its own, and the package must stay cheap and side-effect free when it does.
"""
