"""allauth's SAML endpoints on a tenant host: the ACS (and its finishing step) and the SP's metadata."""

from allauth.socialaccount.providers.saml import views
from allauth.socialaccount.providers.saml.utils import get_app_or_404
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from tenants.sso.adapter import sso_refusal, sso_throttled
from tenants.sso.saml import SamlMetadataError
from tenants.sso.services import sso_failure_record


@sso_throttled
def acs(request: HttpRequest, organization_slug: str) -> HttpResponse:
    """allauth's ACS keeps the posted response in a fresh session until the finishing step; only on
    the host whose tenant has this SAML configuration (no session rows for anyone's junk)."""
    try:
        get_app_or_404(request, organization_slug)
    except SamlMetadataError:
        return _unusable(request)
    response: HttpResponse = views.acs(request, organization_slug=organization_slug)
    return response


def _unusable(request: HttpRequest) -> HttpResponse:
    # Saved metadata is checked when saved; this is for a row that no longer parses (never a 500).
    return sso_refusal(
        request, code="provider_unreachable", message="The identity provider's metadata is unusable.", status=502
    )


def finish_acs(request: HttpRequest, organization_slug: str) -> HttpResponse:
    """allauth's finishing step; a verified response that answers no request this session has
    pending (replayed, or made for another sign-in) ends on the refusal page, not a bare 403."""
    try:
        response: HttpResponse = views.finish_acs(request, organization_slug=organization_slug)
    except SamlMetadataError:
        return _unusable(request)
    except PermissionDenied:
        sso_failure_record(
            tenant=request.tenant,  # type: ignore[attr-defined]
            reason="sso_request_unknown",
            detail="the response's InResponseTo names no request pending in this session",
            request=request,
        )
        return sso_refusal(
            request,
            code="sso_request_unknown",
            message="This answer from the identity provider was already used, or belongs to another sign-in. "
            "Start again from the login page.",
        )
    return response


def single_logout_unsupported(request: HttpRequest, organization_slug: str) -> HttpResponse:
    # allauth's SP metadata names this endpoint, so the name must resolve; Strata's sessions end
    # on Strata's own logout and on deprovisioning, not on an IdP's logout message.
    return HttpResponseNotFound("Single logout is not supported.", content_type="text/plain")


# allauth reverses these names with the organization slug (the tenant's subdomain). Sign-in starts
# at /sso/login/ (tenants.sso.views), not at allauth's login confirmation page.
urlpatterns = [
    path("sso/saml/<str:organization_slug>/acs/", csrf_exempt(acs), name="saml_acs"),
    path("sso/saml/<str:organization_slug>/acs/finish/", finish_acs, name="saml_finish_acs"),
    path("sso/saml/<str:organization_slug>/metadata/", views.metadata, name="saml_metadata"),
    path("sso/saml/<str:organization_slug>/sls/", single_logout_unsupported, name="saml_sls"),
    path(
        "sso/saml/<str:organization_slug>/login/",
        RedirectView.as_view(url="/sso/login/", query_string=True),
        name="saml_login",
    ),
]
