"""A new tenant migration that exists only for a test or a benchmark: the ai app's migrations are copied
into a throwaway package with one more, and MIGRATION_MODULES points at it (the product's files are
never touched)."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db.migrations.loader import MigrationLoader
from django.test.utils import override_settings

from tenants.services import schema_migrations

AI_MIGRATIONS = Path(__file__).resolve().parents[1] / "ai" / "migrations"

PROBE_MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ai", "{parent}")]

    operations = [
        migrations.AddField("document", "{column}", models.BooleanField(default=False)),
        migrations.RunSQL("CREATE TABLE {table} (id integer)", "DROP TABLE {table}"),
    ]
"""


def ai_leaf() -> str:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    (leaf,) = [name for app, name in loader.graph.leaf_nodes() if app == "ai"]
    return leaf


def write_package(directory: Path, *, extra: dict[str, str]) -> str:
    """A package holding the ai migrations plus ``extra`` (file stem -> source); returns its dotted name."""
    package = f"strata_extra_migrations_{uuid.uuid4().hex[:8]}"
    target = directory / package / "ai"
    target.mkdir(parents=True)
    (directory / package / "__init__.py").write_text("")
    for source in AI_MIGRATIONS.glob("*.py"):
        shutil.copy(source, target / source.name)
    for stem, text in extra.items():
        (target / f"{stem}.py").write_text(text)
    return f"{package}.ai"


def probe_migration(*, parent: str, column: str, table: str) -> str:
    return PROBE_MIGRATION.format(parent=parent, column=column, table=table)


@contextmanager
def extra_ai_migrations(directory: Path, *, extra: dict[str, str]) -> Iterator[str]:
    """Run the block with the ai migrations plus ``extra`` on disk, as a deploy would bring them."""
    module = write_package(directory, extra=extra)
    sys.path.insert(0, str(directory))
    schema_migrations.forget_disk_migrations()
    try:
        with override_settings(MIGRATION_MODULES={**getattr(settings, "MIGRATION_MODULES", {}), "ai": module}):
            yield module
    finally:
        schema_migrations.forget_disk_migrations()
        sys.path.remove(str(directory))
