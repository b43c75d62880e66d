"""Sample uploads, made by the tests themselves: PDF, .docx, a .docx bomb, and the uploaded file."""

from __future__ import annotations

import io
import zipfile

import docx
from django.core.files.uploadedfile import SimpleUploadedFile
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas


def pdf_bytes(*pages: list[str]) -> bytes:
    """A real PDF with one page per argument, each page's lines drawn as text
    (``pdf_bytes([])`` is one blank page)."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for lines in pages:
        y = 780
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def docx_bytes(heading: str, paragraphs: list[str]) -> bytes:
    document = docx.Document()
    document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def docx_bomb(xml_megabytes: int) -> bytes:
    """A real .docx whose word/document.xml inflates to about ``xml_megabytes`` MB of repetitive
    paragraphs: a few hundred KB on the wire (the attack of issue 10: 159 KB -> 40 MB of XML)."""
    template = docx_bytes("Bomb", ["placeholder"])
    paragraph = b"<w:p><w:r><w:t>" + b"All work and no play makes Jack a dull boy. " * 20 + b"</w:t></w:r></w:p>"
    with zipfile.ZipFile(io.BytesIO(template)) as source:
        parts = {info.filename: source.read(info.filename) for info in source.infolist()}
    body_start = parts["word/document.xml"].index(b"<w:body>") + len(b"<w:body>")
    head, tail = parts["word/document.xml"][:body_start], parts["word/document.xml"][body_start:]
    repeats = xml_megabytes * 1024 * 1024 // len(paragraph)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for name, data in parts.items():
            if name == "word/document.xml":
                with bomb.open(name, "w", force_zip64=True) as member:
                    member.write(head)
                    for _ in range(repeats):
                        member.write(paragraph)
                    member.write(tail)
            else:
                bomb.writestr(name, data)
    return buffer.getvalue()
