from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ai", "0005_message_error"),
    ]

    operations = [
        migrations.AddField(
            model_name="document",
            name="revision",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
    ]
