"""Shared fixtures: the embedded PostgreSQL test database, two ready tenants, host-aware clients."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import get_hashers, get_hashers_by_algorithm
from django.core.cache import cache
from django.db import connection
from django_tenants.utils import tenant_context
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ai.embedding.embedders import embedder_warm
from config.signup import tenant_signup
from core.models import User
from tenants.models import Membership, Tenant
from tenants.services import tenant_public_ensure, tenant_template_ensure
from tests import embedding_memo
from tests.factories import PASSWORD, UserFactory
from tests.fakes.anthropic_server import FakeAnthropic
from tests.hashers import TEST_PASSWORD_HASHER
from tests.live_server import LiveAsgiServer
from tests.processes import database_backends_end

# Passwords hash with few iterations in the suite (tests/hashers.py): in this process (pytest-django
# read the settings before this file, so they are set here too) and in every process a test starts,
# which inherit the environment.
os.environ["PASSWORD_HASHER"] = TEST_PASSWORD_HASHER
django_settings.PASSWORD_HASHERS = [TEST_PASSWORD_HASHER]
get_hashers.cache_clear()
get_hashers_by_algorithm.cache_clear()
# And the local model embeds a text once per test process (tests/embedding_memo.py).
embedding_memo.install()


# The tools tests/run.sh installs; a test that needs a missing one skips, except under CI.
INSTALLED_TOOLS = re.compile(r"chromium|redis|nginx|xmlsec1", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _embedding_memo(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``real_embeddings`` (of the embedders themselves) run the model for every text."""
    if request.node.get_closest_marker("real_embeddings") is None:
        yield
        return
    with embedding_memo.bypassed():
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Under ``CI=true`` a test skipped for a missing chromium, redis-server, nginx or xmlsec1 fails: a CI
    run that lacks one would otherwise pass with the browser, Redis, nginx and SAML tests silently unrun."""
    report: pytest.TestReport = yield
    if os.environ.get("CI") == "true" and report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        if INSTALLED_TOOLS.search(reason):
            report.outcome = "failed"
            report.longrepr = f"CI=true, and a tool this test needs is missing: {reason}"
    return report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` files first (still in pytest-randomly's order among themselves, and the rest after).

    With ``--dist loadfile --no-loadscope-reorder`` (tests/run.sh) xdist hands out files in this
    order (by default it puts the files with most tests first, and the few-test slow ones last): a
    two-minute file drawn last would run alone while the other worker idles.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _public_schema_after_each_test() -> Iterator[None]:
    """Each test starts where a request starts, in ``public``: a module fixture or a test that
    entered a tenant's schema without leaving it must not run the next test's queries there."""
    database = (connection.settings_dict["NAME"], connection.settings_dict.get("HOST"))
    yield
    connection.set_schema_to_public()
    now = (connection.settings_dict["NAME"], connection.settings_dict.get("HOST"))
    # (The first test to use the database sets it up: the name turns into the test database's then.)
    if database[0].startswith("test_"):
        assert now == database, f"this test left the connection on another database: {now}, not {database}"


@dataclass
class World:
    """A tenant with an owner and a plain member, and their API tokens."""

    tenant: Tenant
    owner: User
    member: User
    owner_token: str
    member_token: str

    @property
    def host(self) -> str:
        return f"{self.tenant.subdomain}.localhost"

    def client(self, token: str | None = None) -> APIClient:
        return host_client(self.host, token)

    def session_client(self, user: User) -> APIClient:
        """A client logged in by session on this tenant's host (sessions live in its schema)."""
        client = host_client(self.host)
        with tenant_context(self.tenant):
            client.force_login(user)
        return client


def host_client(host: str, token: str | None = None) -> APIClient:
    client = APIClient(HTTP_HOST=host)
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def make_world(subdomain: str) -> World:
    result = tenant_signup(
        organisation=subdomain.title(),
        subdomain=subdomain,
        email=f"owner@{subdomain}.test",
        password=PASSWORD,
        plan="free",
    )
    member = UserFactory(email=f"member@{subdomain}.test")
    Membership.objects.create(user=member, tenant=result.tenant, role=Membership.Role.MEMBER)
    member_token, _ = Token.objects.get_or_create(user=member)
    return World(result.tenant, result.user, member, result.token, member_token.key)


def run_suffix() -> str:
    """This pytest run's mark: xdist's run id (the same in every worker), else the process id."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8] or str(os.getpid())


def suffix_test_databases(suffix: str) -> None:
    """Append ``_<suffix>`` to the name of every test database.

    pytest-django has no public API for this: ``_set_suffix_to_test_databases`` is private (its own
    tox and xdist suffixes use it). tests/core/test_test_database.py pins what we rely on, so a
    pytest-django upgrade that renames or changes it fails there, loudly, not by runs colliding."""
    from pytest_django.fixtures import _set_suffix_to_test_databases

    _set_suffix_to_test_databases(suffix=suffix)


@pytest.fixture(scope="session")
def django_db_modify_db_settings_tox_suffix() -> None:
    """A test database per pytest run (xdist adds _gwN after it): runs side by side never collide."""
    suffix_test_databases(run_suffix())


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # noqa: ANN001 - pytest-django fixture override
    with django_db_blocker.unblock():
        assert connection.settings_dict["NAME"].startswith("test_"), "refusing to set up tests on a real database"
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            (database,) = cursor.fetchone()
        assert database == connection.settings_dict["NAME"], f"the worker's connections go to {database}"
        public_tables_guard()
        tenant_public_ensure()
        tenant_template_ensure()
        worlds = {name: make_world(name) for name in ("acme", "globex")}
    yield worlds
    # pytest-django drops the test database next, which PostgreSQL refuses while anyone is connected
    # (the processes and live servers tests started, this process's own pool): the database was left
    # behind, a few hundred megabytes a run.
    with django_db_blocker.unblock():
        database_backends_end()


PUBLIC_TABLES_GUARD = """
CREATE OR REPLACE FUNCTION public.strata_test_public_guard() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE dropped record;
BEGIN
    FOR dropped IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
        IF (dropped.object_type = 'table' AND dropped.schema_name = 'public')
           OR (dropped.object_type = 'schema' AND dropped.object_identity = 'public') THEN
            RAISE EXCEPTION 'a test dropped % %, which every other test of this worker needs',
                dropped.object_type, dropped.object_identity;
        END IF;
    END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS strata_test_public_guard;
CREATE EVENT TRIGGER strata_test_public_guard ON sql_drop EXECUTE FUNCTION public.strata_test_public_guard();
CREATE OR REPLACE FUNCTION public.strata_test_public_rename_guard() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN
        RAISE EXCEPTION 'a test renamed the public schema, which every other test of this worker needs';
    END IF;
END $$;
DROP EVENT TRIGGER IF EXISTS strata_test_public_rename_guard;
CREATE EVENT TRIGGER strata_test_public_rename_guard ON ddl_command_end WHEN TAG IN ('ALTER SCHEMA')
    EXECUTE FUNCTION public.strata_test_public_rename_guard();
"""


def public_tables_guard() -> None:
    """The platform's tables in ``public`` are the whole worker's: a test (or a process it starts)
    that drops one, or the schema, fails there, loudly, instead of every later test failing with
    'relation does not exist'."""
    with connection.cursor() as cursor:
        cursor.execute(PUBLIC_TABLES_GUARD)


@pytest.fixture
def worlds(django_db_setup) -> dict[str, World]:  # noqa: ANN001
    """Where ``acme`` and ``globex`` come from: the session-wide pair. Tests that count a tenant's
    rows override this with a fresh pair per module (tests/ai/conftest.py)."""
    return django_db_setup


@pytest.fixture
def acme(worlds, db) -> World:  # noqa: ANN001
    return worlds["acme"]


@pytest.fixture
def globex(worlds, db) -> World:  # noqa: ANN001
    return worlds["globex"]


@pytest.fixture
def public_client(db) -> APIClient:  # noqa: ANN001
    return host_client("localhost")


@pytest.fixture(autouse=True)
def _fresh_cache_and_schema() -> Iterator[None]:
    # Throttle counters live in the cache; a request leaves its tenant on the connection.
    cache.clear()
    yield
    cache.clear()
    connection.set_schema_to_public()


@pytest.fixture
def unique_subdomain() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def committed_tenants(db) -> list[str]:  # noqa: ANN001
    """Subdomains that a test's threads create and really commit. They are left in place, under
    unique names, until the test database is dropped at the end of the session: dropping a tenant
    schema while the test transaction holds locks on public tables would wait for it."""
    return []


@pytest.fixture(scope="session", autouse=True)
def _jobs_in_process_from_the_start() -> None:
    """Module- and session-wide fixtures run before the per-test settings below: they too must run
    their jobs in-process and keep no warm spares (a job left in the queue would wait for a worker)."""
    django_settings.TASK_MODE = "eager"
    django_settings.TENANT_SPARE_SCHEMAS = 0


@pytest.fixture(autouse=True)
def _eager_tasks_offline_llm(settings) -> None:  # noqa: ANN001
    """Background jobs run at once (inside the test transaction); no model key unless a test sets one."""
    settings.TASK_MODE = "eager"
    settings.TENANT_SPARE_SCHEMAS = 0  # tests that want warm spares turn them on
    settings.ANTHROPIC_API_KEY = ""
    settings.STRIPE_SECRET_KEY = ""


@pytest.fixture(scope="session")
def anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_anthropic(anthropic_server: FakeAnthropic, settings) -> Iterator[FakeAnthropic]:  # noqa: ANN001
    """The real Anthropic SDK pointed at our wire-level fake, with a clean slate per test."""
    anthropic_server.reset()
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
    settings.ANTHROPIC_BASE_URL = anthropic_server.base_url
    settings.ANTHROPIC_MAX_RETRIES = 2
    settings.ANTHROPIC_TIMEOUT = 10.0
    yield anthropic_server
    anthropic_server.reset()


@pytest.fixture
def ingest(django_capture_on_commit_callbacks):  # noqa: ANN001
    """Runs the after-commit work (chunking, embedding) of whatever the block does."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker) -> Iterator[LiveAsgiServer]:  # noqa: ANN001
    """uvicorn serving the real ASGI app. Its threads see committed data only: use the session
    worlds (acme, globex via ``live_worlds``), not rows made inside a test transaction."""
    with django_db_blocker.unblock():
        server = LiveAsgiServer().start()
        embedder_warm()  # as the lifespan warm-up does: no chat waits seconds for the model to load
        yield server
        server.stop()
        database_backends_end()  # the server's threads kept their own connections


@pytest.fixture
def live_worlds(django_db_setup, asgi_server) -> dict[str, World]:  # noqa: ANN001
    return django_db_setup


@pytest.fixture
def new_member():
    """A fresh member of a world (inside the test transaction), for tests that count rows per user."""

    def make(world: World, role: str = Membership.Role.MEMBER) -> tuple[User, str]:
        user = UserFactory()
        Membership.objects.create(user=user, tenant=world.tenant, role=role)
        return user, Token.objects.create(user=user).key

    return make
