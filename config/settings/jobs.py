"""Background jobs (procrastinate): how workers run and how often the periodic jobs fire."""

from .env import env

# "queue": jobs go to PostgreSQL and a worker runs them; "eager": in-process on commit (unit tests).
TASK_MODE = env.str("TASK_MODE", default="queue")
if TASK_MODE not in ("queue", "eager"):
    raise RuntimeError("TASK_MODE must be 'queue' or 'eager'.")

# Jobs one worker process runs at once (each sync job takes a thread and a pooled connection).
# At least 2: a tenant runs one ingestion at a time (fair tasks, core.platform.jobs), so with two
# slots one tenant's backlog of large uploads always leaves a slot for everyone else's jobs.
JOBS_WORKER_CONCURRENCY = env.int("JOBS_WORKER_CONCURRENCY", default=2)
JOBS_HEARTBEAT_SECONDS = env.float("JOBS_HEARTBEAT_SECONDS", default=10.0)
# A worker silent for this long is dead: its jobs go back to the queue (stalled-job retry).
JOBS_STALLED_AFTER_SECONDS = env.float("JOBS_STALLED_AFTER_SECONDS", default=60.0)
JOBS_STALLED_CHECK_CRON = env.str("JOBS_STALLED_CHECK_CRON", default="* * * * *")
JOBS_PRUNE_CRON = env.str("JOBS_PRUNE_CRON", default="17 * * * *")
JOBS_KEEP_FINISHED_HOURS = env.int("JOBS_KEEP_FINISHED_HOURS", default=72)

PROCRASTINATE_AUTODISCOVER_MODULE_NAME = "tasks"
# Modules that define jobs outside a ``tasks`` module (next to the service that defers them).
PROCRASTINATE_IMPORT_PATHS = [
    "core.platform.jobs",
    "core.platform.mail",
    "config.downloads",
    "config.personal_data",
    "config.tenant_archive",
]
# procrastinate's Django models are read-only views for the operator admin.
PROCRASTINATE_READONLY_MODELS = True
# On SIGTERM a worker is gone within this long: running jobs get most of it to finish, are then
# asked to stop between steps (and retried), and a job that does not stop is left to be retried.
JOBS_SHUTDOWN_GRACE_SECONDS = env.float("JOBS_SHUTDOWN_GRACE_SECONDS", default=30.0)
# A worker that loses the database (a PostgreSQL restart) reconnects after this long, doubling
# up to the maximum while it stays away.
JOBS_RECONNECT_MIN_SECONDS = env.float("JOBS_RECONNECT_MIN_SECONDS", default=0.5)
JOBS_RECONNECT_MAX_SECONDS = env.float("JOBS_RECONNECT_MAX_SECONDS", default=15.0)
