"""API shapes of billing."""

from rest_framework import serializers

from billing.models import Plan


class PlanSerializer(serializers.ModelSerializer):
    monthly_price = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = (
            "slug",
            "name",
            "monthly_price",
            "monthly_price_cents",
            "included_tokens",
            "hard_limit",
            "allowed_models",
        )

    def get_monthly_price(self, plan: Plan) -> str:
        return f"{plan.monthly_price_cents / 100:.2f}"


class UsageSummarySerializer(serializers.Serializer):
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    used = serializers.IntegerField()
    included = serializers.IntegerField()
    remaining = serializers.IntegerField()
    hard_limit = serializers.BooleanField()
    cost_micros = serializers.IntegerField()
    by_feature = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))


class SessionUrlSerializer(serializers.Serializer):
    url = serializers.URLField()


class WebhookOutcomeSerializer(serializers.Serializer):
    received = serializers.SerializerMethodField()
    event_id = serializers.CharField()
    type = serializers.CharField()
    duplicate = serializers.BooleanField()
    outcome = serializers.CharField()

    def get_received(self, outcome: object) -> bool:
        return True
