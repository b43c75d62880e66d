from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("core", "0002_vector_extension")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="sessions_epoch",
            field=models.PositiveIntegerField(
                default=0, help_text="Raised to end every session of this account, on every host, at once."
            ),
        ),
    ]
