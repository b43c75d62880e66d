"""How a document reads on its page: a title out of a file name, its type in words, a PDF's lines as paragraphs."""

from __future__ import annotations

import pytest

from ai.ingestion.extraction import extract_title, kind_label, pdf_lines_reflowed, title_from_filename
from tests.uploads import pdf_bytes


@pytest.mark.parametrize(
    ("filename", "title"),
    [
        ("employee_handbook-2024.pdf", "Employee handbook 2024"),
        ("Q3 report - final.docx", "Q3 report - final"),
        ("invoice.pdf", "invoice"),
        ("C:\\fakepath\\team_notes.md", "Team notes"),
    ],
)
def test_a_file_name_gives_a_readable_title(filename: str, title: str) -> None:
    assert title_from_filename(filename) == title


def test_a_placeholder_title_a_tool_wrote_is_no_title() -> None:
    # reportlab calls every PDF "untitled"; the file name then gives the title.
    assert extract_title(filename="a.pdf", content_type="application/pdf", data=pdf_bytes(["Text."])) == ""


@pytest.mark.parametrize(
    ("filename", "content_type", "label"),
    [
        ("a.pdf", "application/pdf", "PDF"),
        ("a.docx", "", "Word document"),
        ("a.md", "text/markdown", "Markdown"),
        ("a.htm", "", "HTML"),
        ("", "text/plain", "Plain text"),
        ("a.csv", "text/csv", ""),
    ],
)
def test_the_type_is_named_in_words(filename: str, content_type: str, label: str) -> None:
    assert kind_label(filename=filename, content_type=content_type) == label


def test_a_pdfs_lines_are_joined_into_paragraphs_but_headings_and_lists_keep_theirs() -> None:
    text = "\n".join(
        [
            "Printing",
            "Printers on every floor release a job only when you tap your badge on",
            "the reader, so confidential pages never sit in the tray. Colour print-",
            "ing needs a manager's approval.",
            "Bring to the meeting, in this order, the papers listed below:",
            "- the agenda",
            "- the minutes",
        ]
    )

    assert pdf_lines_reflowed(text).split("\n") == [
        "Printing",
        "Printers on every floor release a job only when you tap your badge on the reader, so confidential "
        "pages never sit in the tray. Colour printing needs a manager's approval.",
        "Bring to the meeting, in this order, the papers listed below:",
        "- the agenda",
        "- the minutes",
    ]
