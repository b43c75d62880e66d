"""Uploaded text (.txt, .md) is stored as it came: indentation, runs of spaces and blank lines kept;
only line endings become \\n and characters that are never content (NUL, other controls) go."""

from __future__ import annotations

from pathlib import Path

import pytest
from django_tenants.utils import tenant_context

import ai.ingestion.chunking
from ai.models import Chunk
from tests.uploads import upload

# A real Python file, and the whitespace a formatter would never leave but a person might.
PYTHON_SOURCE = Path(ai.ingestion.chunking.__file__).read_text() + (
    "\n\n\n\nclass Aligned:\n"
    "    table = {\n"
    '        "a":      1,   # aligned by hand\n'
    '        "bcd":    22,\n'
    "    }\n"
    "\tdef tabbed(self):  \n"
    "\t\treturn   self.table  \n"
    "\n"
)


def stored_content(world, name: str, data: bytes, content_type: str, ingest) -> dict:  # noqa: ANN001
    client = world.client(world.member_token)
    with ingest():
        response = client.post("/api/documents/", {"file": upload(name, data, content_type)}, format="multipart")
    assert response.status_code == 201, response.content
    stored = client.get(f"/api/documents/{response.json()['id']}/").json()
    assert stored["status"] == "ready", stored
    return stored


@pytest.mark.parametrize(("name", "content_type"), [("chunking.py.txt", "text/plain"), ("code.md", "text/markdown")])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_an_uploaded_python_file_comes_back_byte_identical(acme, ingest, name, content_type, newline):
    data = PYTHON_SOURCE.replace("\n", newline).encode()

    stored = stored_content(acme, name, data, content_type, ingest)

    assert stored["content"] == PYTHON_SOURCE
    with tenant_context(acme.tenant):
        chunks = list(Chunk.objects.filter(document_id=stored["id"]).order_by("position"))
    assert len(chunks) > 1
    assert any('        "a":      1,   # aligned by hand' in chunk.text for chunk in chunks)


def test_nul_and_control_characters_are_dropped_and_the_rest_kept(acme, ingest):
    # A NUL in the first 8 KB marks a binary file (refused); one further on is dropped.
    padding = "    padded  line\n" * 600
    data = f"first line\x07\r\n\r\n\r\n    indented\x1b[0m  text\t\tend\r{padding}\x00last".encode()

    stored = stored_content(acme, "notes.txt", data, "text/plain", ingest)

    assert stored["content"] == f"first line\n\n\n    indented[0m  text\t\tend\n{padding}last"
