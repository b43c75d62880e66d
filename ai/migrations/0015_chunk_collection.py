"""Each chunk carries its document's collection, so the permission-filtered search checks a
candidate on the chunk row alone (issue 22's figure); filled from the documents, then kept true by
a foreign key (document, collection) onto the document's (id, collection) that cascades a move.

Deferrable like Django's own keys: a tenant import restores the tables in name order, chunks
before documents. A referential action (the cascade) is never deferred, so a move updates the
chunks in the same statement."""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = "UPDATE ai_chunk c SET collection_id = d.collection_id FROM ai_document d WHERE d.id = c.document_id"

CONSTRAINTS = [
    (
        "ALTER TABLE ai_document ADD CONSTRAINT document_id_collection_unique UNIQUE (id, collection_id)",
        "ALTER TABLE ai_document DROP CONSTRAINT document_id_collection_unique",
    ),
    (
        "ALTER TABLE ai_chunk ADD CONSTRAINT chunk_document_collection_fk FOREIGN KEY (document_id, collection_id)"
        " REFERENCES ai_document (id, collection_id) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED",
        "ALTER TABLE ai_chunk DROP CONSTRAINT chunk_document_collection_fk",
    ),
]


class Migration(migrations.Migration):
    dependencies = [("ai", "0014_chat_prompt_cites_passages")]

    operations = [
        migrations.AddField(
            model_name="chunk",
            name="collection",
            field=models.ForeignKey(
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="ai.collection",
            ),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="chunk",
            name="collection",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="ai.collection",
            ),
        ),
        *(migrations.RunSQL(forward, backward) for forward, backward in CONSTRAINTS),
    ]
