"""Plain text out of uploaded documents (txt, md, html, pdf, docx), with the upload's type checked.

Two steps, so that no request ever parses a file. ``upload_check`` runs at upload time and costs
a few kilobytes of reading: the type (415), an empty file, and for a .docx the zip directory, whose
declared sizes bound what the parser would inflate (413 for a decompression bomb). ``extract_text``
parses, with its own bounds (PDF pages, text length); the ingestion job runs it through
``extract_text_isolated``: in a fresh child interpreter with a hard memory and time limit, so a
file that slips past the checks costs one killed child, never the worker.

This module imports nothing from Django: the child runs it as ``python -m ai.ingestion.extraction``.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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


@dataclass(frozen=True)
class ParseLimits:
    """What one upload may cost to read (the settings DOCUMENT_* give the values in use)."""

    max_chars: int = 2_000_000
    # A .docx is a zip: python-docx reads every part into memory and parses the XML ones into
    # trees about 15 times their size. These bound that from the zip directory, before parsing.
    max_archive_members: int = 1_000
    max_unpacked_bytes: int = 32 * 1024 * 1024
    # Deflate rarely packs real XML or media past ~30:1; bombs are 250:1 and more.
    max_compression_ratio: int = 100
    max_pdf_pages: int = 2_000


# Members smaller than this are never refused for their ratio (tiny parts compress oddly).
_RATIO_CHECK_MIN_BYTES = 1024 * 1024

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


def upload_check(*, filename: str, content_type: str | None, data: bytes, limits: ParseLimits) -> Kind:
    """The checks an upload gets before it is stored: cheap, no parsing. Returns its kind.

    415 ``unsupported_media_type``; 400 ``empty_document`` for no bytes; 400 ``unreadable_file``
    when the first bytes contradict the type; 413 ``payload_too_large`` for an archive that would
    inflate past the limits.
    """
    kind = detect_kind(filename=filename, content_type=content_type)
    if not data:
        raise _empty(filename)
    if kind == "docx":
        _docx_archive_check(data, filename, limits)
    elif kind == "pdf":
        if b"%PDF-" not in data[:_PDF_HEADER_WINDOW]:
            raise _unreadable(filename, "it is not a PDF")
    else:
        _reject_binary(data, filename)
    return kind


def extract_text(*, filename: str, content_type: str | None, data: bytes, limits: ParseLimits | None = None) -> str:
    """Return the text of an upload (typed text as it came, parsed text normalised), or raise
    ``ApplicationError``.

    415 ``unsupported_media_type`` for types Strata does not read, 400 ``unreadable_file``
    for corrupt files or files whose bytes contradict their type, 400 ``empty_document``
    when nothing readable is left, 413 ``payload_too_large`` past the limits.
    """
    limits = limits or ParseLimits()
    kind = upload_check(filename=filename, content_type=content_type, data=data, limits=limits)
    if kind == "pdf":
        raw = _pdf_text(data, filename, limits)
    elif kind == "docx":
        raw = _docx_text(data, filename)
    elif kind == "html":
        raw = _html_text(data, filename)
    else:
        raw = _decode_text(data, filename)
    # Typed text (code, tables aligned with spaces) is content as it came; the layout that
    # parsers of other formats leave behind is not.
    text = text_as_typed(raw) if kind in ("txt", "md") else normalise_whitespace(raw)
    if not text.strip():
        raise _empty(filename)
    if len(text) > limits.max_chars:
        raise _too_large(f"'{filename or 'upload'}' has more text than", f"{limits.max_chars:,} characters")
    return text


TITLE_MAX_CHARS = 300


def extract_title(*, filename: str, content_type: str | None, data: bytes) -> str:
    """The title the file gives itself, or "": a .docx's core title, an HTML page's ``<title>``,
    a PDF's document information title. Called after ``extract_text`` accepted the file (so its
    size and structure are known to be sane); a title that cannot be read is simply not there."""
    try:
        kind = detect_kind(filename=filename, content_type=content_type)
        if kind == "docx":
            import docx

            title = docx.Document(io.BytesIO(data)).core_properties.title or ""
        elif kind == "html":
            from bs4 import BeautifulSoup

            tag = BeautifulSoup(data, _html_parser()).title
            title = tag.get_text() if tag is not None else ""
        elif kind == "pdf":
            from pypdf import PdfReader

            metadata = PdfReader(io.BytesIO(data)).metadata
            title = str(metadata.title or "") if metadata is not None else ""
        else:
            return ""
    except Exception:  # noqa: BLE001 - a damaged title is no title; the text was read already
        return ""
    title = " ".join(text_as_typed(title).split())[:TITLE_MAX_CHARS]
    return "" if _PLACEHOLDER_TITLE.match(title) else title


# Titles that tools write for every file, which name nothing: reportlab's "untitled", Word's
# "Microsoft Word - report.docx" when printing to PDF, or a file name.
_PLACEHOLDER_TITLE = re.compile(
    r"^(?:untitled(?: document)?|document\d*|microsoft (?:word|powerpoint|excel) - .*|.*\.(?:docx?|pdf|html?|txt|md))$",
    re.IGNORECASE,
)


def title_from_filename(filename: str) -> str:
    """A title out of a file's name: without its folder and extension, and with the underscores
    and hyphens a name uses for spaces read as spaces ("employee_handbook-2024.pdf" becomes
    "Employee handbook 2024"); a name that has spaces already keeps its hyphens."""
    stem = re.split(r"[\\/]", filename or "")[-1]
    stem = stem.rsplit(".", 1)[0] if _extension(stem) else stem
    words = stem.replace("_", " ") if " " in stem.strip() else re.sub(r"[_-]+", " ", stem)
    words = " ".join(words.split())
    if words != stem and words[:1].islower():
        words = words[:1].upper() + words[1:]
    return words or stem


KIND_LABELS: dict[Kind, str] = {
    "txt": "Plain text",
    "md": "Markdown",
    "html": "HTML",
    "pdf": "PDF",
    "docx": "Word document",
}


def kind_label(*, filename: str, content_type: str | None) -> str:
    """What kind of file it was, in words ("PDF", "Word document"), or "" when it is none Strata reads."""
    try:
        return KIND_LABELS[detect_kind(filename=filename, content_type=content_type)]
    except ApplicationError:
        return ""


_LIST_ITEM = re.compile(r"^(?:[-•*▪◦‣–]|\(?\w{1,3}[.)])\s")


def pdf_lines_reflowed(text: str) -> str:
    """A PDF's text with the line breaks the page width made joined into paragraphs, for reading.

    A PDF keeps no paragraphs, only lines: a line nearly as long as the text's full lines went on
    to the next, unless it ends with a colon or the next starts a list item; a word hyphenated at
    the end of a line is joined again. Shorter lines (headings, a paragraph's last line) end there.
    """
    lines = text.split("\n")
    lengths = sorted(len(line) for line in lines if line.strip())
    if len(lengths) < 2:
        return text
    full = lengths[int(len(lengths) * 0.8)] if len(lengths) >= 5 else lengths[-1]
    out: list[str] = []
    last = ""  # the previous line as it was, not as joined
    for line in lines:
        if out and last.strip() and line.strip() and _runs_on(last, line, full):
            if last.endswith("-") and last[-2:-1].isalpha() and line[:1].islower():
                out[-1] = out[-1][:-1] + line
            else:
                out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
        last = line
    return "\n".join(out)


def _runs_on(line: str, following: str, full: int) -> bool:
    return len(line) >= 0.75 * full and not line.rstrip().endswith(":") and not _LIST_ITEM.match(following)


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


def text_as_typed(text: str) -> str:
    """Text as it came, but with \n line endings and without characters that are never content
    (NUL, which PostgreSQL text columns reject outright, and the other control characters)."""
    return _CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


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


def _pdf_text(data: bytes, filename: str, limits: ParseLimits) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _unreadable(filename, "it is password-protected")
        if len(reader.pages) > limits.max_pdf_pages:
            raise _too_large(f"'{filename or 'upload'}' has more pages than", f"{limits.max_pdf_pages:,} pages")
        pages = list(reader.pages)
    except ApplicationError:
        raise
    except Exception as exc:
        # pypdf signals malformed input with many types (PdfReadError, struct.error, zlib.error,
        # RecursionError, DependencyError for AES without a crypto library); all mean a bad upload.
        raise _unreadable(filename, "the PDF is damaged or encrypted") from exc

    texts: list[str] = []
    failed = 0
    length = 0
    for number, page in enumerate(pages, start=1):
        if length > limits.max_chars:  # no point reading past the limit: the document is refused
            raise _too_large(f"'{filename or 'upload'}' has more text than", f"{limits.max_chars:,} characters")
        try:
            texts.append(page.extract_text() or "")
            length += len(texts[-1])
        except Exception:
            # One broken page should not cost the user the other hundred; the log keeps the loss visible.
            failed += 1
            logger.warning("Could not extract text from page %d of %r", number, filename, exc_info=True)
    if pages and failed == len(pages):
        raise _unreadable(filename, "no page of the PDF could be read")
    return "\n\n".join(texts)


def _docx_archive_check(data: bytes, filename: str, limits: ParseLimits) -> None:
    """Refuse a .docx from its zip directory alone: what it would inflate to is declared there, and
    zipfile never inflates a member past its declared size (a lie fails the CRC check instead)."""
    if not data.startswith(b"PK\x03\x04"):
        raise _unreadable(filename, "it is not a Word document")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except Exception as exc:  # BadZipFile, struct.error, ValueError: all mean a damaged archive
        raise _unreadable(filename, "the Word document is damaged") from exc
    name = filename or "upload"
    if len(members) > limits.max_archive_members:
        raise _too_large(f"'{name}' has more parts than", f"{limits.max_archive_members:,}")
    if "word/document.xml" not in {member.filename for member in members}:
        raise _unreadable(filename, "it is not a Word document")
    unpacked = sum(member.file_size for member in members)
    if unpacked > limits.max_unpacked_bytes:
        raise _too_large(
            f"'{name}' is too large once decompressed ({unpacked:,} bytes); the limit is",
            "bytes",
            limit=limits.max_unpacked_bytes,
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size >= _RATIO_CHECK_MIN_BYTES and ratio > limits.max_compression_ratio:
            raise _too_large(
                f"'{name}' is a compression bomb ({member.filename} inflates {ratio:,.0f} times); the limit is",
                "times",
                limit=limits.max_compression_ratio,
            )


def _docx_text(data: bytes, filename: str) -> str:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        return "\n\n".join(_docx_blocks(document))
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


def _too_large(what: str, unit: str, *, limit: int | None = None) -> ApplicationError:
    limit_text = f"{limit:,} {unit}" if limit is not None else unit
    return ApplicationError(f"{what} {limit_text}.", code="payload_too_large", status=413)


# --- Parsing in a child process with hard limits --------------------------------------------


def extract_text_isolated(
    *,
    filename: str,
    content_type: str | None,
    data: bytes,
    limits: ParseLimits,
    timeout_seconds: float,
    memory_bytes: int,
) -> str:
    """The text alone of ``extract_isolated``."""
    return extract_isolated(
        filename=filename,
        content_type=content_type,
        data=data,
        limits=limits,
        timeout_seconds=timeout_seconds,
        memory_bytes=memory_bytes,
    )[0]


def extract_isolated(
    *,
    filename: str,
    content_type: str | None,
    data: bytes,
    limits: ParseLimits,
    timeout_seconds: float,
    memory_bytes: int,
) -> tuple[str, str]:
    """``extract_text`` and ``extract_title`` in a fresh interpreter limited to ``memory_bytes`` of address space and
    ``timeout_seconds``; the same errors, plus 413 when the file needs more than that to parse.

    A fresh ``python -m ai.ingestion.extraction`` (not a fork of the worker, whose address space holds the
    embedding model) so the memory limit measures the parse alone, and one child per file so a
    killed parse takes nothing else with it.
    """
    header = {
        "filename": filename,
        "content_type": content_type,
        "limits": dataclasses.asdict(limits),
        "memory_bytes": memory_bytes,
        "cpu_seconds": int(timeout_seconds) + 1,
    }
    root = Path(__file__).resolve().parents[2]  # the project, whose ai package the child imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "ai.ingestion.extraction"],
            input=json.dumps(header).encode() + b"\n" + data,
            capture_output=True,
            timeout=timeout_seconds,
            cwd=root,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        raise _too_large(
            f"'{filename or 'upload'}' took too long to read; the limit is", f"{timeout_seconds:g} seconds"
        ) from exc
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        # Killed (CPU limit) or crashed, most likely out of memory inside a C parser.
        logger.warning("extraction child for %r exited %s: %s", filename, done.returncode, done.stderr[-2000:])
        raise _too_large(
            f"'{filename or 'upload'}' needs too much memory or time to read; the limit is",
            f"{memory_bytes // (1024 * 1024):,} MB",
        )
    if "error" in answer:
        error = answer["error"]
        raise ApplicationError(error["message"], code=error["code"], status=error["status"])
    return str(answer["text"]), str(answer.get("title") or "")


def _child_main() -> None:
    """The child's side: header line (JSON), then the file's bytes on stdin; JSON on stdout."""
    import resource

    header = json.loads(sys.stdin.buffer.readline())
    memory = header["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (header["cpu_seconds"], header["cpu_seconds"]))
    data = sys.stdin.buffer.read()
    answer: dict[str, Any]
    try:
        text = extract_text(
            filename=header["filename"],
            content_type=header["content_type"],
            data=data,
            limits=ParseLimits(**header["limits"]),
        )
        title = extract_title(filename=header["filename"], content_type=header["content_type"], data=data)
        answer = {"text": text, "title": title}
    except ApplicationError as exc:
        answer = {"error": {"code": exc.code, "message": exc.message, "status": exc.status}}
    except MemoryError:
        del data
        limit = f"{memory // (1024 * 1024):,} MB"
        error = _too_large(f"'{header['filename'] or 'upload'}' needs more memory to read than", limit)
        answer = {"error": {"code": error.code, "message": error.message, "status": error.status}}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    _child_main()
