"""What the tenants app can do: provision schemas, sign organisations up, manage members."""

from tenants.services.provisioning import (  # noqa: F401
    template_is_current,
    tenant_provision,
    tenant_public_ensure,
    tenant_template_ensure,
    tenant_template_ensure_once,
)
from tenants.services.signup import SignupResult, tenant_signup  # noqa: F401
from tenants.services.status import tenant_reactivate, tenant_suspend  # noqa: F401
