"""Collections, and the default one every tenant has: existing documents move into it. Run in the
template schema too, so every cloned tenant starts with its default collection."""

import django.db.models.deletion
import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models

DEFAULT_NAME = "General"


def default_collection_fill(apps, schema_editor):
    Collection = apps.get_model("ai", "Collection")
    Document = apps.get_model("ai", "Document")
    default, _ = Collection.objects.get_or_create(is_default=True, defaults={"name": DEFAULT_NAME})
    Document.objects.filter(collection__isnull=True).update(collection=default)


class Migration(migrations.Migration):
    dependencies = [
        ("ai", "0006_document_revision"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Collection",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=120)),
                (
                    "visibility",
                    models.CharField(
                        choices=[("tenant", "Everyone in the organisation"), ("members", "Named members only")],
                        default="tenant",
                        max_length=10,
                    ),
                ),
                ("is_default", models.BooleanField(default=False)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-is_default", "name", "id"]},
        ),
        migrations.CreateModel(
            name="CollectionMember",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "collection",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="grants", to="ai.collection"
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.AddConstraint(
            model_name="collection",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"), name="collection_unique_name"
            ),
        ),
        migrations.AddConstraint(
            model_name="collection",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_default", True)), fields=("is_default",), name="collection_one_default"
            ),
        ),
        migrations.AddConstraint(
            model_name="collection",
            constraint=models.CheckConstraint(
                condition=models.Q(("visibility__in", ["tenant", "members"])), name="collection_visibility_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="collection",
            constraint=models.CheckConstraint(
                condition=models.Q(("is_default", True), ("visibility", "members"), _negated=True),
                name="collection_default_tenant_wide",
            ),
        ),
        migrations.AddIndex(
            model_name="collectionmember",
            index=models.Index(fields=["user"], name="collection_member_user_idx"),
        ),
        migrations.AddConstraint(
            model_name="collectionmember",
            constraint=models.UniqueConstraint(fields=("collection", "user"), name="collection_member_unique"),
        ),
        migrations.AddField(
            model_name="document",
            name="collection",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="documents", to="ai.collection"
            ),
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(fields=["collection", "-created"], name="document_collection_idx"),
        ),
        migrations.RunPython(default_collection_fill, migrations.RunPython.noop),
    ]
