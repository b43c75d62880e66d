"""The tenant's plan moves to billing: every tenant gets a Subscription row that holds it."""

from django.db import migrations, models


def plans_to_subscriptions(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    Subscription = apps.get_model("billing", "Subscription")
    Plan = apps.get_model("billing", "Plan")
    free = Plan.objects.filter(slug="free").first()
    for tenant in Tenant.objects.exclude(schema_name="public"):
        plan_id = tenant.plan_id or (free.pk if free else None)
        subscription = Subscription.objects.filter(tenant_id=tenant.pk).first()
        if subscription is None:
            Subscription.objects.create(tenant_id=tenant.pk, plan_id=plan_id, status="")
        else:
            subscription.plan_id = plan_id
            subscription.save(update_fields=["plan"])


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_usage_key_per_tenant_meter_backoff"), ("tenants", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="subscription",
            name="plan",
            field=models.ForeignKey(
                null=True, on_delete=models.deletion.PROTECT, related_name="subscriptions", to="billing.plan"
            ),
        ),
        migrations.AlterField(
            model_name="subscription",
            name="status",
            field=models.CharField(
                blank=True, default="", help_text="Stripe's subscription status (empty without Stripe).", max_length=30
            ),
        ),
        migrations.RunPython(plans_to_subscriptions, migrations.RunPython.noop),
    ]
