"""``/api/sso/scim-token/``: the owner makes (or replaces), inspects and revokes the tenant's SCIM token."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.models import User
from core.platform.api import IsTenantOwner, TenantAPIView
from core.platform.exceptions import ApplicationError
from core.platform.schema import error_responses
from tenants.scim.models import ScimToken
from tenants.scim.services import scim_token_create, scim_token_revoke


class ScimTokenSerializer(serializers.ModelSerializer[ScimToken]):
    created_by = serializers.EmailField(source="created_by.email", allow_null=True, read_only=True)

    class Meta:
        model = ScimToken
        fields = ("prefix", "created", "created_by", "last_used")
        read_only_fields = fields


class ScimTokenCreatedSerializer(serializers.Serializer[dict[str, object]]):
    token = serializers.CharField(help_text="The token itself: shown in this answer only.")
    prefix = serializers.CharField()
    created = serializers.DateTimeField()
    scim_url = serializers.CharField(help_text="The SCIM base address to give the identity provider.")


class ScimTokenApi(TenantAPIView):
    """One token per organisation, for its identity provider (Okta, Microsoft Entra...): a new one
    replaces the old at once. Owners only."""

    membership_permission = IsTenantOwner

    @extend_schema(responses={200: ScimTokenSerializer, **error_responses(404)})
    def get(self, request: Request) -> Response:
        token = ScimToken.objects.for_tenant(request.tenant).select_related("created_by").first()  # type: ignore[attr-defined]
        if token is None:
            raise ApplicationError("This organisation has no SCIM token.", code="not_found", status=404)
        return Response(ScimTokenSerializer(token).data)

    @extend_schema(request=None, responses={201: ScimTokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        user = request.user
        assert isinstance(user, User)
        issued = scim_token_create(tenant=request.tenant, created_by=user)  # type: ignore[attr-defined]
        body = {
            "token": issued.raw,
            "prefix": issued.token.prefix,
            "created": issued.token.created,
            "scim_url": request.build_absolute_uri("/scim/v2/"),
        }
        response = Response(ScimTokenCreatedSerializer(body).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(responses={204: None, **error_responses(404)})
    def delete(self, request: Request) -> Response:
        scim_token_revoke(tenant=request.tenant, actor=request.user)  # type: ignore[attr-defined, arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)
