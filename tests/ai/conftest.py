"""Fixtures of the AI tests: each module gets tenants of its own.

Live-server tests commit conversations, actions and usage into the session-wide acme and globex;
tests here that count rows use a fresh pair per module instead (see ``world_create``): this
``worlds`` overrides the session-wide one that ``acme`` and ``globex`` (tests/conftest.py) take.
"""

import pytest

from tests.ai.factories import world_create
from tests.conftest import World


@pytest.fixture(scope="module")
def worlds(django_db_setup, django_db_blocker) -> dict[str, World]:  # noqa: ANN001
    with django_db_blocker.unblock():
        return {"acme": world_create("Acme"), "globex": world_create("Globex")}
