"""The plan now lives on billing.Subscription (billing depends on tenants, never the reverse)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial"), ("billing", "0007_subscription_plan_required")]

    operations = [migrations.RemoveField(model_name="tenant", name="plan")]
