"""Seed the Free, Pro and Enterprise plans (editable afterwards in the operator admin)."""

from django.db import migrations

PLANS = [
    {
        "slug": "free",
        "name": "Free",
        "monthly_price_cents": 0,
        "included_tokens": 200_000,
        "hard_limit": True,
        "sort_order": 0,
    },
    {
        "slug": "pro",
        "name": "Pro",
        "monthly_price_cents": 4_900,
        "included_tokens": 5_000_000,
        "hard_limit": False,
        "sort_order": 1,
    },
    {
        "slug": "enterprise",
        "name": "Enterprise",
        "monthly_price_cents": 49_900,
        "included_tokens": 100_000_000,
        "hard_limit": False,
        "sort_order": 2,
    },
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in PLANS:
        Plan.objects.update_or_create(slug=plan["slug"], defaults=plan)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
