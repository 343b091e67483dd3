"""The DWH helper as an Airflow plugin: its HTTP API under ``/pluginsv2/dwh-helper`` of the API server.

Airflow 3 serves a plugin's Flask blueprints only through the FAB provider's Flask app, mounted at
``/pluginsv2``; without the provider the API server refuses to start when any plugin lists one. So the
blueprint is listed only when the provider is installed, and otherwise the plugin still loads, says
why the endpoints are missing, and leaves the API server alone.

The API's docs page (Swagger UI) is in the Airflow UI's Docs menu, as an external view: the UI shows
it in a frame under ``/plugin/dwh-helper-api``. Its ``href`` has no leading slash, so it resolves
against the UI's base URL and still holds when Airflow is served under a path (``[api] base_url``).

That Flask app protects every POST, PUT, PATCH and DELETE with Flask-WTF's CSRF check, which wants a
form token no API client has. The DWH helper's blueprints are exempt: they authenticate with Airflow's
JWT and check the origin of cookie-authenticated writes themselves (:mod:`dwh_helper.auth`).

The ``dwh_helper`` package next to this file is imported as a package (Airflow puts the plugins
folder on ``sys.path``); ``.airflowignore`` keeps the plugin loader from also importing each of its
files as a top-level module.
"""

from __future__ import annotations

import importlib.util
import logging

from airflow.plugins_manager import AirflowPlugin
from flask import Blueprint
from flask.blueprints import BlueprintSetupState

from dwh_helper.app import api

log = logging.getLogger(__name__)

FAB_PROVIDER = "airflow.providers.fab"


def _fab_installed() -> bool:
    try:
        return importlib.util.find_spec(FAB_PROVIDER) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _blueprint_tree(blueprint: Blueprint) -> list[Blueprint]:
    """The blueprint and all its descendants. Flask-WTF exempts blueprints one by one (it compares the
    blueprint a view belongs to, not its parents), and Flask lists children only in ``_blueprints``."""
    tree = [blueprint]
    for child, _options in blueprint._blueprints:
        tree.extend(_blueprint_tree(child))
    return tree


@api.record_once
def _exempt_from_csrf(state: BlueprintSetupState) -> None:
    """Exempt the whole blueprint tree from the host app's CSRF check, if it has one. In Airflow that
    is ``airflow.providers.fab.www.app.csrf``, which Flask-WTF registers as the ``csrf`` extension."""
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        for blueprint in _blueprint_tree(api):
            csrf.exempt(blueprint)


SERVED = _fab_installed()
#: The docs page in the UI's menu (an ``external_views`` entry of Airflow 3's plugin interface).
DOCS_VIEW = {
    "name": "DWH Helper API",
    "href": f"pluginsv2{api.url_prefix}/docs",
    "url_route": "dwh-helper-api",
    "category": "docs",
    "destination": "nav",
}


class DwhHelperPlugin(AirflowPlugin):
    """Registers the DWH helper's blueprint (``/dwh/<table>``, ``/s3``, ``/appmetrica``, ``/amplitude``,
    ``/openapi.json``, ``/docs``, ``/redoc``) and its docs page in the UI's menu."""

    name = "dwh_helper"
    flask_blueprints = [api] if SERVED else []
    external_views = [DOCS_VIEW] if SERVED else []

    @classmethod
    def on_load(cls, *args: object, **kwargs: object) -> None:
        if not cls.flask_blueprints:
            log.warning(
                "The DWH helper's endpoints are not served: Airflow serves plugin blueprints only with the "
                "FAB provider (pip install apache-airflow-providers-fab)."
            )
