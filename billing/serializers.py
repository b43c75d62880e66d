"""API shapes of billing."""

from rest_framework import serializers

from billing.models import Plan


class PlanSerializer(serializers.ModelSerializer):
    monthly_price = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = ("slug", "name", "monthly_price", "monthly_price_cents", "included_tokens", "hard_limit", "allowed_models")

    def get_monthly_price(self, plan: Plan) -> str:
        return f"{plan.monthly_price_cents / 100:.2f}"
