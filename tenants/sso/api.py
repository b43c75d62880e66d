"""``/api/sso/``: the owner reads, replaces or removes the tenant's single sign-on configuration."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.platform.api import IsTenantOwner, TenantAPIView
from core.platform.exceptions import ApplicationError
from core.platform.fields import StorableCharField
from core.platform.schema import error_responses
from tenants.sso.models import SsoConfig
from tenants.sso.saml import saml_service_provider
from tenants.sso.services import SsoSettings, sso_config_delete, sso_config_get, sso_config_save


class SsoOwner(IsTenantOwner):
    message = "Only owners of this organisation may change its single sign-on."


class SsoConfigInputSerializer(serializers.Serializer[Any]):
    protocol = serializers.ChoiceField(choices=SsoConfig.Protocol.choices)
    issuer = StorableCharField(max_length=500, required=False, allow_blank=True, default="")
    client_id = StorableCharField(max_length=255, required=False, allow_blank=True, default="")
    client_secret = StorableCharField(
        max_length=2000, required=False, help_text="Omit to keep the stored secret.", trim_whitespace=False
    )
    metadata_url = StorableCharField(max_length=500, required=False, allow_blank=True, default="")
    metadata_xml = StorableCharField(max_length=200_000, required=False, allow_blank=True, default="")
    allowed_domains = serializers.ListField(child=StorableCharField(max_length=253), max_length=100, default=list)
    default_role = serializers.ChoiceField(choices=[("member", "Member"), ("admin", "Admin")], default="member")
    enforced = serializers.BooleanField(default=False)


class SsoConfigSerializer(serializers.ModelSerializer[SsoConfig]):
    has_client_secret = serializers.SerializerMethodField()
    login_url = serializers.SerializerMethodField()
    callback_url = serializers.SerializerMethodField()
    sp_entity_id = serializers.SerializerMethodField(help_text="SAML: the entity id to register at the IdP.")

    class Meta:
        model = SsoConfig
        fields = (
            "protocol",
            "issuer",
            "client_id",
            "has_client_secret",
            "metadata_url",
            "metadata_xml",
            "allowed_domains",
            "default_role",
            "enforced",
            "login_url",
            "callback_url",
            "sp_entity_id",
            "created",
            "updated",
        )
        read_only_fields = fields

    def get_has_client_secret(self, config: SsoConfig) -> bool:
        return bool(config.client_secret)

    def get_login_url(self, config: SsoConfig) -> str:
        return str(self.context["request"].build_absolute_uri("/sso/login/"))

    def get_callback_url(self, config: SsoConfig) -> str:
        """The redirect URI to register at the identity provider (SAML: the ACS address)."""
        if config.protocol == SsoConfig.Protocol.SAML:
            return saml_service_provider(request=self.context["request"], tenant=config.tenant).acs_url
        return str(self.context["request"].build_absolute_uri("/sso/callback/"))

    def get_sp_entity_id(self, config: SsoConfig) -> str | None:
        if config.protocol != SsoConfig.Protocol.SAML:
            return None
        return saml_service_provider(request=self.context["request"], tenant=config.tenant).entity_id


class SsoConfigApi(TenantAPIView):
    membership_permission = SsoOwner

    @extend_schema(responses={200: SsoConfigSerializer, **error_responses(404)})
    def get(self, request: Request) -> Response:
        config = sso_config_get(tenant=request.tenant)  # type: ignore[attr-defined]
        if config is None:
            raise ApplicationError("Single sign-on is not set up.", code="sso_not_configured", status=404)
        return Response(SsoConfigSerializer(config, context={"request": request}).data)

    @extend_schema(request=SsoConfigInputSerializer, responses={200: SsoConfigSerializer, **error_responses(502)})
    def put(self, request: Request) -> Response:
        data = SsoConfigInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        config = sso_config_save(
            tenant=request.tenant,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            data=SsoSettings(**data.validated_data),
        )
        return Response(SsoConfigSerializer(config, context={"request": request}).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        sso_config_delete(tenant=request.tenant, actor=request.user)  # type: ignore[attr-defined, arg-type]
        return Response(status=204)
