"""Plain text out of uploaded documents (txt, md, html, pdf, docx), with the upload's type checked."""

from __future__ import annotations

import codecs
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from core.platform.exceptions import ApplicationError

if TYPE_CHECKING:
    from bs4 import BeautifulSoup
    from docx.document import Document as DocxDocument
    from docx.table import Table

logger = logging.getLogger(__name__)

Kind = Literal["txt", "md", "html", "pdf", "docx"]

SUPPORTED_EXTENSIONS: dict[str, Kind] = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}

SUPPORTED_CONTENT_TYPES: dict[str, Kind] = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}

# A docx is a zip; refuse archives that inflate past this rather than let one upload eat the worker's memory.
MAX_DOCX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024

# The PDF spec lets a header hide behind up to 1 KiB of junk, and readers (pypdf too) accept that.
_PDF_HEADER_WINDOW = 1024

# Leading bytes of binary formats that must never be read as text.
_BINARY_SIGNATURES = (
    b"%PDF-",
    b"PK\x03\x04",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # OLE2: .doc, .xls, .msg
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"\x7fELF",
    b"\x1f\x8b",
)

_TEXT_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_HTML_DROPPED_TAGS = ("script", "style", "nav", "noscript", "template", "svg", "canvas", "iframe", "object", "head")
_HTML_BLOCK_TAGS = frozenset(
    "address article aside blockquote caption dd details div dl dt fieldset figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr li main ol p pre section summary table tbody thead tfoot ul".split()
)
_HTML_LINE_TAGS = frozenset({"br", "tr"})
_HTML_CELL_TAGS = frozenset({"td", "th"})
# Private-use sentinels survive BeautifulSoup and whitespace collapsing, unlike "\n" in markup.
_PARAGRAPH_MARK = "\ue000"
_LINE_MARK = "\ue001"

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def extract_text(*, filename: str, content_type: str | None, data: bytes) -> str:
    """Return the normalised text of an upload, or raise ``ApplicationError``.

    415 ``unsupported_media_type`` for types Strata does not read, 400 ``unreadable_file``
    for corrupt files or files whose bytes contradict their type, 400 ``empty_document``
    when nothing readable is left.
    """
    kind = detect_kind(filename=filename, content_type=content_type)
    if not data:
        raise _empty(filename)
    if kind == "pdf":
        raw = _pdf_text(data, filename)
    elif kind == "docx":
        raw = _docx_text(data, filename)
    elif kind == "html":
        raw = _html_text(data, filename)
    else:
        raw = _decode_text(data, filename)
    text = normalise_whitespace(raw)
    if not text:
        raise _empty(filename)
    return text


def detect_kind(*, filename: str, content_type: str | None) -> Kind:
    """Pick the reader from the extension, or from the content type when the name has none."""
    extension = _extension(filename)
    if extension:
        kind = SUPPORTED_EXTENSIONS.get(extension)
        if kind is None:
            raise _unsupported(f"Files of type '{extension}' are not supported.")
        return kind
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    kind = SUPPORTED_CONTENT_TYPES.get(mime)
    if kind is None:
        described = f"'{mime}'" if mime else "an unknown type"
        raise _unsupported(f"'{filename or 'upload'}' is {described}, which is not supported.")
    return kind


def normalise_whitespace(text: str) -> str:
    """Unify line endings, collapse runs of spaces, strip lines and keep at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2029", "\n\n").replace("\u2028", "\n").replace("\f", "\n").replace("\v", "\n")
    text = text.translate(_INVISIBLE)
    # NUL and friends are never content, and PostgreSQL text columns reject NUL outright.
    text = _CONTROL_CHARS.sub("", text)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _extension(filename: str) -> str:
    # Browsers on Windows used to send full paths ("C:\\fakepath\\x.pdf").
    name = re.split(r"[\\/]", filename or "")[-1]
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem.strip("."):
        return ""
    return f".{suffix.lower()}"


def _pdf_text(data: bytes, filename: str) -> str:
    from pypdf import PdfReader

    if b"%PDF-" not in data[:_PDF_HEADER_WINDOW]:
        raise _unreadable(filename, "it is not a PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _unreadable(filename, "it is password-protected")
        pages = list(reader.pages)
    except ApplicationError:
        raise
    except Exception as exc:
        # pypdf signals malformed input with many types (PdfReadError, struct.error, zlib.error,
        # RecursionError, DependencyError for AES without a crypto library); all mean a bad upload.
        raise _unreadable(filename, "the PDF is damaged or encrypted") from exc

    texts: list[str] = []
    failed = 0
    for number, page in enumerate(pages, start=1):
        try:
            texts.append(page.extract_text() or "")
        except Exception:
            # One broken page should not cost the user the other hundred; the log keeps the loss visible.
            failed += 1
            logger.warning("Could not extract text from page %d of %r", number, filename, exc_info=True)
    if pages and failed == len(pages):
        raise _unreadable(filename, "no page of the PDF could be read")
    return "\n\n".join(texts)


def _docx_text(data: bytes, filename: str) -> str:
    import docx

    if not data.startswith(b"PK\x03\x04"):
        raise _unreadable(filename, "it is not a Word document")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
        if "word/document.xml" not in {member.filename for member in members}:
            raise _unreadable(filename, "it is not a Word document")
        if sum(member.file_size for member in members) > MAX_DOCX_UNCOMPRESSED_BYTES:
            raise _unreadable(filename, "it is too large once decompressed")
        document = docx.Document(io.BytesIO(data))
        return "\n\n".join(_docx_blocks(document))
    except ApplicationError:
        raise
    except Exception as exc:
        # zipfile, lxml and python-docx raise a zoo of types on malformed input; all mean a bad upload.
        raise _unreadable(filename, "the Word document is damaged") from exc


def _docx_blocks(document: DocxDocument) -> Iterator[str]:
    from docx.text.paragraph import Paragraph

    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            yield block.text
        else:
            yield from _docx_table_rows(block)


def _docx_table_rows(table: Table) -> Iterator[str]:
    from docx.text.paragraph import Paragraph

    # Merged cells come back once per grid slot they span; count each underlying cell once. The set
    # holds the elements themselves: lxml proxies are compared by identity, and an id() could be reused.
    seen: set[object] = set()
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            if cell._tc in seen:
                continue
            seen.add(cell._tc)
            parts: list[str] = []
            for block in cell.iter_inner_content():
                if isinstance(block, Paragraph):
                    parts.append(block.text)
                else:
                    parts.extend(_docx_table_rows(block))
            cell_text = " ".join(part.strip() for part in parts if part.strip())
            if cell_text:
                cells.append(cell_text)
        if cells:
            yield " | ".join(cells)


def _html_text(data: bytes, filename: str) -> str:
    from bs4 import BeautifulSoup

    _reject_binary(data, filename)
    try:
        markup: str | bytes = _decode_unicode(data)
    except UnicodeDecodeError:
        # Not UTF-8: let BeautifulSoup honour the page's own <meta charset> before guessing.
        markup = data
    try:
        soup = BeautifulSoup(markup, _html_parser())
    except Exception as exc:
        raise _unreadable(filename, "the HTML could not be parsed") from exc
    return _soup_text(soup)


def _soup_text(soup: BeautifulSoup) -> str:
    from bs4 import Comment, Tag

    for tag in soup.find_all(_HTML_DROPPED_TAGS):
        tag.decompose()
    for comment in soup.find_all(string=lambda node: isinstance(node, Comment)):
        comment.extract()
    for pre in soup.find_all("pre"):
        for node in pre.find_all(string=True):
            node.replace_with(node.replace("\n", _LINE_MARK))
    for tag in soup.find_all(True):
        if not isinstance(tag, Tag):
            continue
        if tag.name in _HTML_BLOCK_TAGS:
            tag.insert_before(_PARAGRAPH_MARK)
            tag.insert_after(_PARAGRAPH_MARK)
        elif tag.name in _HTML_LINE_TAGS:
            tag.insert_after(_LINE_MARK)
        elif tag.name in _HTML_CELL_TAGS:
            tag.insert_after(" ")
    # Browsers render source newlines as spaces, so only the marks above may break lines.
    text = " ".join(soup.get_text().split())
    return text.replace(_PARAGRAPH_MARK, "\n\n").replace(_LINE_MARK, "\n")


def _html_parser() -> str:
    try:
        import lxml  # noqa: F401
    except ImportError:
        return "html.parser"
    return "lxml"


def _decode_text(data: bytes, filename: str) -> str:
    _reject_binary(data, filename)
    try:
        return _decode_unicode(data)
    except UnicodeDecodeError:
        pass
    text = _decode_legacy(data)
    if text is None:
        raise _unreadable(filename, "its character encoding could not be recognised")
    return text


def _decode_unicode(data: bytes) -> str:
    """Decode by byte-order mark, else as strict UTF-8."""
    for bom, encoding in _TEXT_BOMS:
        if data.startswith(bom):
            return data.decode(encoding)
    return data.decode("utf-8")


def _decode_legacy(data: bytes) -> str | None:
    """Decode a non-UTF-8 text, preferring Windows-1252 when it reads as well as the best guess.

    charset-normalizer ranks cp1250 and cp1252 equal on typical Western text and then
    picks cp1250, which turns "€" and curly quotes into the wrong letters; cp1252 is by
    far the likelier legacy encoding of an upload, so it wins ties.
    """
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        pass
    else:
        matches = from_bytes(data)
        best = matches.best()
        if best is not None:
            for match in matches:
                if match.encoding == "cp1252" and match.chaos <= best.chaos and match.coherence >= best.coherence:
                    return str(match)
            return str(best)
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return None


def _reject_binary(data: bytes, filename: str) -> None:
    if any(data.startswith(bom) for bom, _ in _TEXT_BOMS):
        return
    if data.startswith(_BINARY_SIGNATURES) or b"\x00" in data[:8192]:
        raise _unreadable(filename, "it is a binary file, not text")


def _unsupported(message: str) -> ApplicationError:
    supported = ", ".join(sorted({ext.lstrip(".") for ext in SUPPORTED_EXTENSIONS}))
    return ApplicationError(f"{message} Upload one of: {supported}.", code="unsupported_media_type", status=415)


def _unreadable(filename: str, reason: str) -> ApplicationError:
    return ApplicationError(f"Could not read '{filename or 'upload'}': {reason}.", code="unreadable_file", status=400)


def _empty(filename: str) -> ApplicationError:
    return ApplicationError(f"'{filename or 'upload'}' contains no text to index.", code="empty_document", status=400)
