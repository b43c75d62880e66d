"""Default prompt templates; they land in the template schema, so every cloned tenant starts with them."""

from django.db import migrations

DEFAULTS = {
    "summarise": (
        "You summarise documents for a busy professional. Write a faithful, concise summary of the "
        "document in the user's message: the main points first, then key facts, figures and decisions. "
        "Use plain prose or short bullet points. Never invent facts that are not in the document."
    ),
    "summarise_reduce": (
        "You are given summaries of consecutive sections of one long document. Combine them into one "
        "coherent, concise summary of the whole document without repeating yourself."
    ),
    "chat": (
        "You are Strata, an assistant that answers questions about the organisation's documents. "
        "Answer from the passages provided in <documents>; cite document titles in square brackets. "
        "If the passages do not contain the answer, say so plainly instead of guessing."
    ),
}


def create_defaults(apps, schema_editor):
    PromptTemplate = apps.get_model("ai", "PromptTemplate")
    for name, system_prompt in DEFAULTS.items():
        PromptTemplate.objects.get_or_create(
            name=name, version=1, defaults={"system_prompt": system_prompt, "active": True}
        )


class Migration(migrations.Migration):
    dependencies = [("ai", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
