"""The provider the settings ask for: Anthropic when a key is set, offline otherwise.

The Anthropic SDK is imported when the first Anthropic provider is made, not with this module: it
is 3,300 modules and 1.2 s of CPU, half of what starting any Strata process costs, and a job
worker that only embeds, a ``manage.py`` command, or a platform without a key never uses it. A
web process makes its provider while it warms up (``llm_warm``, config.lifespan), before it
reports ready, so no chat waits for the import."""

from __future__ import annotations

import functools
from typing import NamedTuple

from django.conf import settings

from ai.llm.offline import OfflineProvider
from ai.llm.types import LLMProvider


class ProviderConfig(NamedTuple):
    api_key: str
    base_url: str | None
    model: str
    max_retries: int
    timeout: float


def get_llm_provider() -> LLMProvider:
    """The provider the settings ask for: Anthropic when a key is set, offline otherwise."""
    config = ProviderConfig(
        api_key=settings.ANTHROPIC_API_KEY,
        base_url=settings.ANTHROPIC_BASE_URL,
        model=settings.ANTHROPIC_MODEL,
        max_retries=settings.ANTHROPIC_MAX_RETRIES,
        timeout=settings.ANTHROPIC_TIMEOUT,
    )
    return provider_for(config)


@functools.lru_cache(maxsize=8)
def provider_for(config: ProviderConfig) -> LLMProvider:
    """One provider (and so one set of HTTP clients) per distinct configuration."""
    if not config.api_key:
        return OfflineProvider()
    from ai.llm.claude import AnthropicProvider  # the SDK loads only when it is used (above)

    return AnthropicProvider(
        api_key=config.api_key,
        base_url=config.base_url,
        model=config.model,
        max_retries=config.max_retries,
        timeout=config.timeout,
    )


def llm_warm() -> None:
    """Make the configured provider (importing its SDK), so the first chat of a process does not."""
    get_llm_provider()
