"""The tenant admin's change history (Django's ``django_admin_log``, one per tenant schema) loses its
foreign key to ``public.core_user``.

Each such key puts two triggers on ``core_user``: at 10,000 tenants it carried 20,000, which every
backend loads whenever that table's cache entry is rebuilt, and every signup rebuilt it everywhere
(a new schema's key changes ``core_user``). Signing up, logging in (``last_login``) and creating a
user all slowed with the number of tenants, and deleting a user had its key checked in every
schema. The ai app's own references to the user have never been database keys for this reason;
deleting an account clears the person's log entries in every schema (ai.services.people).
"""

from django.db import migrations

DROP = """
DO $$
DECLARE
    key text;
BEGIN
    FOR key IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'django_admin_log'::regclass AND contype = 'f' AND confrelid = 'core_user'::regclass
    LOOP
        EXECUTE format('ALTER TABLE django_admin_log DROP CONSTRAINT %I', key);
    END LOOP;
END $$;
"""

RESTORE = """
ALTER TABLE django_admin_log ADD CONSTRAINT django_admin_log_user_id_c564eba6_fk_core_user_id
    FOREIGN KEY (user_id) REFERENCES core_user (id) DEFERRABLE INITIALLY DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ai", "0016_agent_action_unreviewed_index"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]

    operations = [migrations.RunSQL(DROP, reverse_sql=RESTORE)]
