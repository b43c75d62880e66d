"""Every document is in a collection (a migration of its own: PostgreSQL refuses to alter a table
with the previous migration's deferred foreign-key checks still pending)."""

import django.db.models.deletion
from django.db import migrations, models

import ai.models


class Migration(migrations.Migration):
    dependencies = [("ai", "0007_collections")]

    operations = [
        migrations.AlterField(
            model_name="document",
            name="collection",
            field=models.ForeignKey(
                default=ai.models.collection_default_id,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="documents",
                to="ai.collection",
            ),
        ),
    ]
