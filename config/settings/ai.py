"""Embeddings, ingestion, search, summaries and chat."""

from .env import DATA_DIR, env

# Embeddings: the bundled all-MiniLM-L6-v2 on the CPU by default, or Voyage AI.
EMBEDDING_BACKEND = env.str("EMBEDDING_BACKEND", default="local")
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
EMBEDDING_DIMENSIONS = env.int("EMBEDDING_DIMENSIONS", default=384)
EMBEDDING_BATCH_SIZE = env.int("EMBEDDING_BATCH_SIZE", default=64)
# The local model runs on ONNX Runtime, built once from the checked weights into EMBEDDING_CACHE_DIR.
# Intra-op threads per model call in a web process (embed_documents picks its own by measuring):
# one, since a process serves many calls at once.
EMBEDDING_THREADS = env.int("EMBEDDING_THREADS", default=1)
# A job worker's (manage.py worker): 0 is every core the process may use. A tenant's ingestion runs
# one job at a time, and on one thread it embedded at 0.56x what the machine can (bench_embed.py).
EMBEDDING_WORKER_THREADS = env.int("EMBEDDING_WORKER_THREADS", default=0)
EMBEDDING_CACHE_DIR = env.path("EMBEDDING_CACHE_DIR", default=str(DATA_DIR / "models"))
# Chat questions arriving within this many milliseconds of each other share one model call of at
# most EMBEDDING_QUERY_BATCH_MAX questions (1 turns batching off); a lone question never waits.
EMBEDDING_QUERY_BATCH_MAX = env.int("EMBEDDING_QUERY_BATCH_MAX", default=32)
EMBEDDING_QUERY_BATCH_WAIT_MS = env.float("EMBEDDING_QUERY_BATCH_WAIT_MS", default=2.0)
# Questions are embedded by the model's int8 graph (ai/embedding/onnx.py: 2-4x faster, vectors
# within cosine 0.99, the same results on the labelled set); documents always by the float graph.
# false: questions by the float graph too.
EMBEDDING_QUERY_INT8 = env.bool("EMBEDDING_QUERY_INT8", default=True)
# How much nicer (Linux nice steps) than serving the thread embedding questions runs: a question's
# vector is computed while its turn is accepted, and that turn's database step comes first.
EMBEDDING_QUERY_NICENESS = env.int("EMBEDDING_QUERY_NICENESS", default=10)
VOYAGE_API_KEY = env.str("VOYAGE_API_KEY", default="")
VOYAGE_BASE_URL = env.str("VOYAGE_BASE_URL", default="") or None

# Ingestion: text is chunked and embedded by the ingestion job.
DOCUMENT_MAX_UPLOAD_BYTES = env.int("DOCUMENT_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
DOCUMENT_MAX_CHARS = env.int("DOCUMENT_MAX_CHARS", default=2_000_000)
# An upload is stored as it came and read by the ingestion job, never by the request. The job
# parses it in a child process with these hard limits; a .docx (a zip) is refused at upload from
# its zip directory when it would inflate past the archive limits (decompression bombs).
DOCUMENT_PARSE_TIMEOUT_SECONDS = env.float("DOCUMENT_PARSE_TIMEOUT_SECONDS", default=60.0)
DOCUMENT_PARSE_MEMORY_MB = env.int("DOCUMENT_PARSE_MEMORY_MB", default=1024)
DOCUMENT_MAX_ARCHIVE_MEMBERS = env.int("DOCUMENT_MAX_ARCHIVE_MEMBERS", default=1_000)
DOCUMENT_MAX_UNPACKED_BYTES = env.int("DOCUMENT_MAX_UNPACKED_BYTES", default=32 * 1024 * 1024)
DOCUMENT_MAX_COMPRESSION_RATIO = env.int("DOCUMENT_MAX_COMPRESSION_RATIO", default=100)
DOCUMENT_MAX_PDF_PAGES = env.int("DOCUMENT_MAX_PDF_PAGES", default=2_000)
CHUNK_TOKENS = env.int("CHUNK_TOKENS", default=200)
CHUNK_OVERLAP_TOKENS = env.int("CHUNK_OVERLAP_TOKENS", default=30)

# Search: HNSW candidate list size; iterative scans keep filtered searches returning k rows.
HNSW_EF_SEARCH = env.int("HNSW_EF_SEARCH", default=120)
# Every database connection opens with the search's planner settings (core.platform.database), so
# a search with them needs no transaction of its own to SET them (ai.selectors).
DATABASE_SESSION_SETTINGS = {"hnsw.ef_search": HNSW_EF_SEARCH, "hnsw.iterative_scan": "relaxed_order"}
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
# A stream slot expires this long after its answer's process last refreshed it (a heartbeat every
# quarter of it, tokens or not), so a crashed process frees its users' slots within seconds.
CHAT_STREAM_SLOT_TTL_SECONDS = env.int("CHAT_STREAM_SLOT_TTL_SECONDS", default=10)
# A streaming answer's text and usage are saved into its message this often: a crashed process
# loses at most this much of an answer (the message keeps the rest, as interrupted).
CHAT_CHECKPOINT_SECONDS = env.float("CHAT_CHECKPOINT_SECONDS", default=2.0)
# Resuming: every answer's frames go to a stream log (Redis Streams with REDIS_URL, memory otherwise)
# that expires this long after the answer ends; an answer nobody follows any more goes on this long
# waiting for a resume, then is cancelled and saved as interrupted.
CHAT_RESUME_TTL_SECONDS = env.float("CHAT_RESUME_TTL_SECONDS", default=600)
CHAT_RESUME_GRACE_SECONDS = env.float("CHAT_RESUME_GRACE_SECONDS", default=30)
# A stopping server process lets its answers in flight finish (they may be followed from another
# process through Redis) for at most this long, then saves the rest as interrupted.
CHAT_SHUTDOWN_DRAIN_SECONDS = env.float("CHAT_SHUTDOWN_DRAIN_SECONDS", default=25)
# Agent actions (prompts and outputs) older than this are deleted by a daily job, in batches, except
# those flagged for training; the usage ledger (public, no text) keeps their counts.
AGENT_ACTION_RETENTION_DAYS = env.int("AGENT_ACTION_RETENTION_DAYS", default=365)
AGENT_ACTION_PRUNE_CRON = env.str("AGENT_ACTION_PRUNE_CRON", default="53 3 * * *")
