"""Each pytest run has a test database of its own, named with the run's suffix (tests/conftest.py).
That goes through pytest-django's private ``_set_suffix_to_test_databases``; these tests pin what we
rely on, so a pytest-django upgrade that changes it fails here rather than by runs colliding."""

import os

from django.conf import settings
from django.db import connection

from tests.conftest import run_suffix, suffix_test_databases


def test_the_test_database_name_carries_this_runs_suffix_then_the_workers(db):  # noqa: ANN001
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    ending = f"_{run_suffix()}" + (f"_{worker}" if worker else "")

    name = connection.settings_dict["NAME"]

    assert name.startswith("test_") and name.endswith(ending), name


def test_the_suffix_goes_after_the_test_name_of_every_database(monkeypatch):  # noqa: ANN001
    databases = {
        "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "strata"},
        "named": {"ENGINE": "django.db.backends.postgresql", "NAME": "other", "TEST": {"NAME": "check_other"}},
    }
    monkeypatch.setattr(settings, "DATABASES", databases)

    suffix_test_databases("run1")

    assert databases["default"]["TEST"]["NAME"] == "test_strata_run1"
    assert databases["named"]["TEST"]["NAME"] == "check_other_run1"


def test_a_pool_made_before_the_database_was_renamed_lends_connections_to_the_new_name(db):  # noqa: ANN001
    """What create_test_db does (it renames the database in the settings, without closing a pool):
    a pool made before, when a test without the database touched it first, must not keep lending
    connections to the database it was made for (the migrations and the tests would run there)."""
    from core.platform.database.base import DatabaseWrapper

    test_database = connection.settings_dict["NAME"]
    probe_settings = {**connection.settings_dict, "NAME": "postgres"}
    probe = DatabaseWrapper(probe_settings, alias="pool_probe")
    try:
        assert probe.pool.kwargs["dbname"] == "postgres"
        probe_settings["NAME"] = test_database

        with probe.cursor() as cursor:
            cursor.execute("SELECT current_database(), to_regclass('public.tenants_tenant') IS NOT NULL")
            assert cursor.fetchone() == (test_database, True)
    finally:
        probe.close()
        probe.close_pool()
