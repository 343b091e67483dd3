"""Where the DWH helper's settings live: the Airflow connection ids and Variable names that replaced
the DWH helper service's ``.env`` (see :mod:`include.dwh.legacy_env` for the mapping).

* ``dwh_db``: the DWH database (sqlite, postgres or mysql) that ``/dwh`` reads and writes.
* ``dwh_s3`` (aws): the bucket behind ``/s3``; its extra names the bucket.
* ``appmetrica_api`` (http): the AppMetrica Logs API (password: the OAuth token).
* ``amplitude_web`` / ``amplitude_mobile`` (http): the Amplitude Export API keys of each project.

Every module, the plugin, the sandbox, the bench and the tests name these ids through the constants
here, so a renamed connection is renamed everywhere.
"""

from __future__ import annotations

DWH_CONN_ID = "dwh_db"
S3_CONN_ID = "dwh_s3"
APPMETRICA_CONN_ID = "appmetrica_api"
AMPLITUDE_WEB_CONN_ID = "amplitude_web"
AMPLITUDE_MOBILE_CONN_ID = "amplitude_mobile"
#: Amplitude ``source`` (the API's ``?source=``) -> the connection with that project's keys.
AMPLITUDE_CONN_IDS: dict[str, str] = {"web": AMPLITUDE_WEB_CONN_ID, "mobile": AMPLITUDE_MOBILE_CONN_ID}

#: The Variable holding the saved AppMetrica export definitions (beside the connection's extra).
APPMETRICA_EXPORTS_VARIABLE = "appmetrica_exports"

#: Environment variable naming the directory under which the export DAGs build their temporary files
#: (default: the system's temporary directory); each run uses a locked directory of its own there.
EXPORT_WORKDIR_ENV = "DWH_EXPORT_WORKDIR"
#: The pool that bounds queued AppMetrica Logs API requests (the API allows 3 per application).
APPMETRICA_POOL = "appmetrica_logs_api"
