"""A job that ends while holding a lock tells the workers of its queue, as a job inserted does.

procrastinate's workers fetch again when a job is inserted (a NOTIFY from its insert trigger) or
when their polling interval (5 s) passes. A tenant's ingestion jobs share a lock, so only one runs
at a time: when it ended, the tenant's next job became fetchable with no notification, and waited
for the poll, up to 5 s a document (tests/core/test_jobs.py). This trigger sends procrastinate's
own ``job_inserted`` notification on the queue's channels when a locked job leaves ``doing``
(delivered at commit, when the lock is free), so every worker on that queue, on any machine,
fetches again at once.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION strata_jobs_notify_lock_released() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload TEXT := json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text;
BEGIN
    PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
    PERFORM pg_notify('procrastinate_any_queue_v1', payload);
    RETURN NEW;
END;
$$;
CREATE TRIGGER strata_jobs_notify_lock_released
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW WHEN (OLD.status = 'doing' AND NEW.status <> 'doing' AND NEW.lock IS NOT NULL)
    EXECUTE FUNCTION strata_jobs_notify_lock_released();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS strata_jobs_notify_lock_released ON procrastinate_jobs;
DROP FUNCTION IF EXISTS strata_jobs_notify_lock_released();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_user_sessions_epoch"),
        ("procrastinate", "0041_post_retry_failed_job"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
