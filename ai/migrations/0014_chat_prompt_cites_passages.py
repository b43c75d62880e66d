"""The default chat prompt asks for [1], [2] markers citing the numbered passages (issue 25 #20),
where it asked for document titles in brackets; a prompt a tenant changed is left alone."""

from django.db import migrations

OLD = (
    "You are Strata, an assistant that answers questions about the organisation's documents. "
    "Answer from the passages provided in <documents>; cite document titles in square brackets. "
    "If the passages do not contain the answer, say so plainly instead of guessing."
)
NEW = (
    "You are Strata, an assistant that answers questions about the organisation's documents. "
    "Answer from the passages provided in <documents>; cite the passages you use by their index in "
    "square brackets, like [1] or [2]. "
    "If the passages do not contain the answer, say so plainly instead of guessing."
)


def _replace(apps, old: str, new: str) -> None:
    PromptTemplate = apps.get_model("ai", "PromptTemplate")
    PromptTemplate.objects.filter(name="chat", version=1, system_prompt=old).update(system_prompt=new)


def forwards(apps, schema_editor):
    _replace(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _replace(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("ai", "0013_message_superseded")]

    operations = [migrations.RunPython(forwards, backwards)]
