"""Language models behind one small interface: Claude through the Anthropic SDK, or an offline
provider that quotes the tenant's own passages and says so."""

from ai.llm.factory import get_llm_provider, llm_warm, provider_for
from ai.llm.types import Completion, LLMProvider, LLMStream, Usage, estimate_tokens

__all__ = [
    "Completion",
    "LLMProvider",
    "LLMStream",
    "Usage",
    "estimate_tokens",
    "get_llm_provider",
    "llm_warm",
    "provider_for",
]
