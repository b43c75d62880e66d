"""Embeddings, ingestion, search, summaries and chat."""

from .env import env

# Embeddings: the bundled all-MiniLM-L6-v2 on the CPU by default, or Voyage AI.
EMBEDDING_BACKEND = env.str("EMBEDDING_BACKEND", default="local")
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
EMBEDDING_DIMENSIONS = env.int("EMBEDDING_DIMENSIONS", default=384)
EMBEDDING_BATCH_SIZE = env.int("EMBEDDING_BATCH_SIZE", default=64)
# Torch threads per web process for the local model (0 = torch's default).
EMBEDDING_TORCH_THREADS = env.int("EMBEDDING_TORCH_THREADS", default=1)
# embed_documents may use bfloat16 matrix maths on CPUs with AMX tiles (cosine to float32 >= 0.99998).
EMBEDDING_BULK_BFLOAT16 = env.bool("EMBEDDING_BULK_BFLOAT16", default=True)
VOYAGE_API_KEY = env.str("VOYAGE_API_KEY", default="")
VOYAGE_BASE_URL = env.str("VOYAGE_BASE_URL", default="") or None

# Ingestion: text is chunked and embedded by the ingestion job.
DOCUMENT_MAX_UPLOAD_BYTES = env.int("DOCUMENT_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
DOCUMENT_MAX_CHARS = env.int("DOCUMENT_MAX_CHARS", default=2_000_000)
CHUNK_TOKENS = env.int("CHUNK_TOKENS", default=200)
CHUNK_OVERLAP_TOKENS = env.int("CHUNK_OVERLAP_TOKENS", default=30)

# Search: HNSW candidate list size; iterative scans keep filtered searches returning k rows.
HNSW_EF_SEARCH = env.int("HNSW_EF_SEARCH", default=120)
SEARCH_MAX_K = env.int("SEARCH_MAX_K", default=50)
# Search and chat drop passages further than this cosine distance from the question. 0.65 had the
# best F1 on the labelled set in tests/ai/relevance_set.py with the bundled model (see
# tests/benchmarks/bench_relevance.py); measure again for another EMBEDDING_MODEL.
SEARCH_MAX_DISTANCE = env.float("SEARCH_MAX_DISTANCE", default=0.65)

# Summaries: documents past this many tokens are summarised section by section, then combined.
SUMMARY_CONTEXT_TOKENS = env.int("SUMMARY_CONTEXT_TOKENS", default=12_000)
SUMMARY_MAX_TOKENS = env.int("SUMMARY_MAX_TOKENS", default=600)

# Chat: what one message may hold, how much history and context go to the model, streams per user.
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=8_000)
CHAT_CONTEXT_CHUNKS = env.int("CHAT_CONTEXT_CHUNKS", default=5)
CHAT_HISTORY_TOKENS = env.int("CHAT_HISTORY_TOKENS", default=4_000)
CHAT_MAX_TOKENS = env.int("CHAT_MAX_TOKENS", default=1_024)
CHAT_MAX_STREAMS_PER_USER = env.int("CHAT_MAX_STREAMS_PER_USER", default=3)
# A stream slot expires this long after its answer last sent a token, so a crashed process
# never keeps a user's slot for long.
CHAT_STREAM_SLOT_TTL_SECONDS = env.int("CHAT_STREAM_SLOT_TTL_SECONDS", default=60)
