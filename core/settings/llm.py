"""LLM, embedding, ingestion and search settings (Anthropic is on only when its key is set)."""

from .env import PRODUCTION, env

ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="") or None
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="claude-sonnet-4-6")
ANTHROPIC_MAX_RETRIES = env.int("ANTHROPIC_MAX_RETRIES", default=2)
ANTHROPIC_TIMEOUT = env.float("ANTHROPIC_TIMEOUT", default=60.0)
if PRODUCTION and not ANTHROPIC_API_KEY and not env.bool("ALLOW_OFFLINE_LLM", default=False):
    raise RuntimeError("ANTHROPIC_API_KEY is required in production (or set ALLOW_OFFLINE_LLM=true).")

EMBEDDING_BACKEND = env.str("EMBEDDING_BACKEND", default="local")
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
EMBEDDING_DIMENSIONS = env.int("EMBEDDING_DIMENSIONS", default=384)
EMBEDDING_BATCH_SIZE = env.int("EMBEDDING_BATCH_SIZE", default=64)
VOYAGE_API_KEY = env.str("VOYAGE_API_KEY", default="")
VOYAGE_BASE_URL = env.str("VOYAGE_BASE_URL", default="") or None

# Ingestion: uploads are parsed in the request, chunked and embedded in the background.
DOCUMENT_MAX_UPLOAD_BYTES = env.int("DOCUMENT_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
DOCUMENT_MAX_CHARS = env.int("DOCUMENT_MAX_CHARS", default=2_000_000)
CHUNK_TOKENS = env.int("CHUNK_TOKENS", default=200)
CHUNK_OVERLAP_TOKENS = env.int("CHUNK_OVERLAP_TOKENS", default=30)
# "thread": an in-process worker pool; "eager": run at once (tests).
TASK_MODE = env.str("TASK_MODE", default="thread")

# Search: HNSW candidate list size; iterative scans keep filtered searches returning k rows.
HNSW_EF_SEARCH = env.int("HNSW_EF_SEARCH", default=120)
SEARCH_MAX_K = env.int("SEARCH_MAX_K", default=50)

# Summaries: documents past this many tokens are summarised section by section, then combined.
SUMMARY_CONTEXT_TOKENS = env.int("SUMMARY_CONTEXT_TOKENS", default=12_000)
SUMMARY_MAX_TOKENS = env.int("SUMMARY_MAX_TOKENS", default=600)
TASK_WORKERS = env.int("TASK_WORKERS", default=2)
if TASK_MODE not in ("thread", "eager"):
    raise RuntimeError("TASK_MODE must be 'thread' or 'eager'.")

# Chat: what one message may hold, how much history and context go to the model, streams per user.
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=8_000)
CHAT_CONTEXT_CHUNKS = env.int("CHAT_CONTEXT_CHUNKS", default=5)
CHAT_HISTORY_TOKENS = env.int("CHAT_HISTORY_TOKENS", default=4_000)
CHAT_MAX_TOKENS = env.int("CHAT_MAX_TOKENS", default=1_024)
CHAT_MAX_STREAMS_PER_USER = env.int("CHAT_MAX_STREAMS_PER_USER", default=3)
EMBEDDING_TORCH_THREADS = env.int("EMBEDDING_TORCH_THREADS", default=1)
# embed_documents may use bfloat16 matrix maths on CPUs with AMX tiles (cosine to float32 >= 0.99998).
EMBEDDING_BULK_BFLOAT16 = env.bool("EMBEDDING_BULK_BFLOAT16", default=True)
