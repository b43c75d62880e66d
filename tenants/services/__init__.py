"""What the tenants app can do: provision schemas, keep them migrated, suspend, reactivate, close, restore, delete."""

from tenants.services.provisioning import (  # noqa: F401
    template_is_current,
    tenant_provision,
    tenant_public_ensure,
    tenant_template_ensure,
    tenant_template_ensure_once,
)
from tenants.services.status import (  # noqa: F401
    tenant_close,
    tenant_delete,
    tenant_reactivate,
    tenant_restore,
    tenant_suspend,
)
