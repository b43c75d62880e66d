from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ai", "0015_chunk_collection"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="agentaction",
            index=models.Index(
                condition=models.Q(("reviewed", False), models.Q(("status", "ok"), _negated=True)),
                fields=["status", "-timestamp"],
                name="agent_action_unreviewed_idx",
            ),
        ),
    ]
