"""The active prompt template of each kind, as the tenant's admins configured it."""

from __future__ import annotations

from ai.models import PromptTemplate
from core.platform.exceptions import ApplicationError


def prompt_active(*, name: str) -> PromptTemplate:
    template = PromptTemplate.objects.filter(name=name, active=True).first()
    if template is None:
        raise ApplicationError(
            f"No active '{name}' prompt template; an admin must activate one.", code="prompt_missing", status=409
        )
    return template
