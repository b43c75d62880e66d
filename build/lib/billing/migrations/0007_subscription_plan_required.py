"""Every subscription names its plan (after 0006 gave each tenant one)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_subscription_plan")]

    operations = [
        migrations.AlterField(
            model_name="subscription",
            name="plan",
            field=models.ForeignKey(on_delete=models.deletion.PROTECT, related_name="subscriptions", to="billing.plan"),
        ),
    ]
