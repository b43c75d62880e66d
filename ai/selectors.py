"""Reads of the AI app that need care: semantic search through the HNSW index, relevance."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from pgvector import Vector

from ai.access import Reader, documents_readable, readable_collections_sql
from ai.embedding.embedders import get_embedder
from ai.ingestion.extraction import KIND_LABELS, kind_label, pdf_lines_reflowed
from ai.models import Chunk, Conversation, Document, Message
from ai.snippets import Snippet, snippets_nearest
from core.platform.admission import connections_release
from core.platform.database.base import session_setting
from core.platform.database.prepared import prepared_rows
from core.platform.sql_names import column, table
from tenants.models import Tenant
from tenants.selectors import invitations_open, members_list


@dataclass(frozen=True)
class SearchHit:
    document_id: int
    title: str
    chunk_id: int
    text: str
    distance: float
    relevance: int = 0


@dataclass(frozen=True)
class DocumentHits:
    """One document's passages among the hits, best first: a single source however many matched."""

    document_id: int
    title: str
    relevance: int
    passages: list[SearchHit]
    snippets: list[Snippet] = field(default_factory=list)  # the search page's, one a passage shown

    @property
    def chunk_id(self) -> int:
        return self.passages[0].chunk_id

    @property
    def passages_snippets(self) -> list[tuple[SearchHit, Snippet]]:
        return list(zip(self.passages, self.snippets, strict=False))


def relevance_score(distance: float, *, max_distance: float) -> int:
    """A 0-100 score for people: 0 at the relevance threshold, 100 at half of it or closer.

    On the labelled set (tests/ai/relevance_set.py) unrelated passages never came closer than
    0.55 of cosine distance, which scores under 30 with the default threshold: "weak".
    """
    if max_distance <= 0:
        return 100 if distance <= 0 else 0
    score = (max_distance - distance) / (max_distance / 2)
    return max(0, min(100, round(score * 100)))


def hits_by_document(hits: Sequence[SearchHit]) -> list[DocumentHits]:
    """Collapse hits into one entry per document, ordered by each document's best passage."""
    grouped: dict[int, list[SearchHit]] = {}
    for hit in sorted(hits, key=lambda hit: hit.distance):
        grouped.setdefault(hit.document_id, []).append(hit)
    return [
        DocumentHits(document_id=doc_id, title=passages[0].title, relevance=passages[0].relevance, passages=passages)
        for doc_id, passages in grouped.items()
    ]


def documents_search_grouped(
    *, reader: Reader, query: str, documents: int = 10, passages_each: int = 2
) -> list[DocumentHits]:
    """The search page's results: up to ``documents`` documents nearest ``query``, each with its
    best ``passages_each`` passages and a snippet of each (its sentences nearest the query).

    The nearest passages are read in one search, as ``documents_search`` reads them; when they
    come from fewer documents than asked for (one long document can hold many near passages),
    the search asks again for more, up to 16 passages a document."""
    embedder = get_embedder()
    connections_release()  # embedding is CPU work: no pooled connection waits on it
    vector = embedder.embed_query(query)
    k = documents * 4
    while True:
        hits = documents_search(reader=reader, query=query, k=k, vector=vector)
        grouped = hits_by_document(hits)[:documents]
        # Fewer than k hits: none further is close enough, asking for more would find nothing.
        if len(grouped) >= documents or len(hits) < k or k >= documents * 16:
            break
        k *= 4
    shown = [group.passages[:passages_each] for group in grouped]
    connections_release()  # the snippets' sentences are up to a few hundred embeddings
    snippets = iter(
        snippets_nearest(
            query_vector=vector,
            passages=[hit.text for passages in shown for hit in passages],
            embed=embedder.embed_documents,
        )
    )
    return [
        replace(group, passages=passages, snippets=[next(snippets) for _ in passages])
        for group, passages in zip(grouped, shown, strict=True)
    ]


@dataclass(frozen=True)
class NearChunk:
    id: int
    document_id: int
    title: str  # the document's
    text: str
    distance: float


def _search_sql(
    vector: list[float], *, k: int, document_ids: Sequence[int] | None, reader: Reader | None = None
) -> tuple[str, list[Any]]:
    """``ORDER BY embedding <=> q LIMIT k``, the shape the HNSW (cosine) index answers, with each
    chunk's document title. Plain SQL because it runs before every first token of a chat and
    building it through the ORM costs more than running it: 0.7-1.1 ms more a search at p50 for 8
    of 2,000 chunks, 1.2 ms against 1.9 on a quiet machine (tests/benchmarks/bench_orm_vs_sql.py).

    With a ``reader``, what they may read is part of this statement (ai.access): the collections
    are an InitPlan computed once (``ARRAY(...)``, which the planner cannot turn into a join that
    would lose the index's order), each candidate is checked against it as the index yields it,
    and the iterative scan keeps reading the index until k readable chunks are found. The check
    reads the chunk's own copy of its collection (``Chunk.collection``, kept true by the
    database), so a candidate costs no probe of its document: a member reading 5 of 50
    collections passes over ~130 candidates for k=10, which cost ~135 document probes (414
    buffers) when the check joined the document; the join is left for the title of the k rows
    kept. The rest of the filter's cost is those candidates' index and heap reads (~1,270 buffers
    against ~1,160 unfiltered). Planning the readable-collections subquery (0.3-0.6 ms against
    0.1-0.3 unfiltered) is paid once per pooled connection: an ordinary search is a prepared
    statement (``chunks_nearest``), so k is part of the text, not a parameter
    (tests/benchmarks/bench_search.py, docs/benchmarks.md)."""
    names = _search_names()
    filters = f"c.{names['embedding']} IS NOT NULL"
    params: list[Any] = [Vector(vector)]  # binary (core.platform.database.base)
    if reader is not None:
        readable, readable_params = readable_collections_sql(reader)
        filters += f" AND c.{names['collection']} = ANY(ARRAY({readable}))"
        params += readable_params
        if reader.collection_ids is not None:
            filters += f" AND c.{names['collection']} = ANY(%s)"
            params.append(list(reader.collection_ids))
        if reader.document_ids is not None:
            filters += f" AND c.{names['document']} = ANY(%s)"
            params.append(list(reader.document_ids))
    if document_ids is not None:
        filters += f" AND c.{names['document']} = ANY(%s)"
        params.append(list(document_ids))
    sql = (
        f"SELECT c.{names['id']}, c.{names['document']}, d.{names['title']}, c.{names['text']},"
        f" c.{names['embedding']} <=> %s::vector AS distance"
        f" FROM {names['chunks']} c JOIN {names['documents']} d ON d.{names['document_id']} = c.{names['document']}"
        f" WHERE {filters} ORDER BY distance LIMIT {int(k)}"
    )
    # The vector is the first placeholder, in the SELECT list; the filters' come after it. k is
    # part of the text: a kept plan for "LIMIT $n" would be costed for a tenth of the table.
    return sql, params


@functools.cache
def _search_names() -> dict[str, str]:
    return {
        "chunks": table(Chunk),
        "documents": table(Document),
        "id": column(Chunk, "id"),
        "document": column(Chunk, "document"),
        "text": column(Chunk, "text"),
        "embedding": column(Chunk, "embedding"),
        "document_id": column(Document, "id"),
        "title": column(Document, "title"),
        "collection": column(Chunk, "collection"),
    }


@contextmanager
def _search_settings(*, k: int, exact: bool) -> Iterator[bool]:
    """The planner settings of one search. Every connection opens with HNSW_EF_SEARCH and iterative
    scans (DATABASE_SESSION_SETTINGS), so an ordinary search sets nothing; an exact one, a k past
    ef_search, or a connection opened before the setting changed sets them with SET LOCAL, undone
    when the search ends.

    A search writes nothing, so its transaction, or its savepoint inside a caller's transaction,
    is rolled back: a released savepoint would leave the settings (``enable_indexscan = off``
    above all) on every later query of the caller's transaction.

    Yields whether the search may run as a prepared statement: only an ordinary one. A kept plan
    ignores planner settings: an exact search would still use the index.
    """
    ef_search = max(settings.HNSW_EF_SEARCH, k)
    connection.ensure_connection()
    if not exact and _session_has(ef_search):
        yield True
        return
    with transaction.atomic():
        try:
            with connection.cursor() as cursor:
                # One round trip. pgvector 0.8's iterative scan keeps reading the index when a
                # filter drops candidates, so a filtered search still returns k rows.
                cursor.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true),"
                    " set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                    " set_config('enable_indexscan', %s, true)",
                    [str(ef_search), "off" if exact else "on"],
                )
            yield False
        finally:
            transaction.set_rollback(True)


def _session_has(ef_search: int) -> bool:
    return (
        session_setting(connection, "hnsw.ef_search") == str(ef_search)
        and session_setting(connection, "hnsw.iterative_scan") == "relaxed_order"
    )


def chunks_nearest(
    *,
    vector: list[float],
    k: int,
    document_ids: Sequence[int] | None = None,
    exact: bool = False,
    reader: Reader | None = None,
) -> list[NearChunk]:
    """The k chunks nearest ``vector`` in the current tenant's schema (HNSW unless ``exact``) that
    ``reader`` may read (no reader: the whole schema, for tools and benchmarks, never a request)."""
    sql, params = _search_sql(vector, k=k, document_ids=document_ids, reader=reader)
    with _search_settings(k=k, exact=exact) as ordinary:
        if ordinary:
            rows = prepared_rows(sql, params)
        else:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
    chunks = [NearChunk(*row) for row in rows]
    # relaxed_order may return neighbours slightly out of order; restore it.
    return sorted(chunks, key=lambda chunk: chunk.distance)


def chunks_nearest_plan(
    *,
    vector: list[float],
    k: int,
    document_ids: Sequence[int] | None = None,
    exact: bool = False,
    analyze: bool = False,
    reader: Reader | None = None,
) -> str:
    """PostgreSQL's plan for the query ``chunks_nearest`` runs with the same arguments (EXPLAIN)."""
    sql, params = _search_sql(vector, k=k, document_ids=document_ids, reader=reader)
    with _search_settings(k=k, exact=exact), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {'(ANALYZE) ' if analyze else ''}{sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def documents_search(
    *,
    reader: Reader,
    query: str,
    k: int = 5,
    max_distance: float | None = None,
    vector: list[float] | None = None,
) -> list[SearchHit]:
    """Up to ``k`` chunks of the documents ``reader`` may read nearest in meaning to ``query``, by cosine
    distance, without those further than ``max_distance`` (default ``SEARCH_MAX_DISTANCE``): an
    unrelated passage is not a hit, however few hits there are.

    ``vector`` is the query's embedding when the caller already computed it (chat does, in
    parallel with its own database work)."""
    limit = settings.SEARCH_MAX_DISTANCE if max_distance is None else max_distance
    if vector is None:
        vector = get_embedder().embed_query(query)
    hits = []
    for chunk in chunks_nearest(vector=vector, k=k, reader=reader):
        distance = float(chunk.distance)
        if distance <= limit:
            relevance = relevance_score(distance, max_distance=settings.SEARCH_MAX_DISTANCE)
            hits.append(
                SearchHit(
                    document_id=chunk.document_id,
                    title=chunk.title,
                    chunk_id=chunk.id,
                    text=chunk.text,
                    distance=distance,
                    relevance=relevance,
                )
            )
    return hits


DOCUMENT_PAGE_MAX_CHARS = 100_000
DOCUMENT_PAGE_PASSAGES = 10  # passages a page of the document's list shows (81 of them made 20,000 px)


@dataclass(frozen=True)
class DocumentReading:
    """What a document's page shows: its text (a window of it when long) split around the
    highlighted passage, and one page of its passages (by default the one holding that passage)."""

    document: Document
    before: str
    highlighted: str
    after: str
    text_start: int
    text_end: int
    passages: list[Chunk]
    highlighted_chunk: Chunk | None
    passages_page: int = 1
    passages_pages: int = 1
    type_label: str = ""

    @property
    def text_clipped(self) -> bool:
        return self.text_start > 0 or self.text_end < len(self.document.content)

    @property
    def passages_from(self) -> int:
        return self.passages[0].position + 1 if self.passages else 0

    @property
    def passages_to(self) -> int:
        return self.passages[-1].position + 1 if self.passages else 0


def _passage_span(content: str, passage: str) -> tuple[int, int] | None:
    """Where ``passage`` lies in ``content``: verbatim, or with any run of whitespace matching any other."""
    start = content.find(passage)
    if start >= 0:
        return start, start + len(passage)
    words = passage.split()
    if not words:
        return None
    match = re.search(r"\s+".join(re.escape(word) for word in words), content)
    return (match.start(), match.end()) if match else None


# Marks where the highlight starts and ends while a PDF's lines are joined (private-use characters).
_HIGHLIGHT_MARKS = ("\ue010", "\ue011")


def _pdf_reflowed(before: str, highlighted: str, after: str) -> tuple[str, str, str]:
    start, end = _HIGHLIGHT_MARKS
    joined = pdf_lines_reflowed(f"{before}{start}{highlighted}{end}{after}")
    before, rest = joined.split(start, 1)
    highlighted, after = rest.split(end, 1)
    return before, highlighted, after


def document_reading(
    *, document: Document, passage_id: int | None = None, passages_page: int | None = None
) -> DocumentReading:
    """The document page's text and passages, highlighting passage ``passage_id`` when it is one of
    its chunks. A PDF's text and passages are shown with its lines joined into paragraphs."""
    content = document.content
    chunk = None
    if passage_id is not None:
        chunk = Chunk.objects.filter(document=document, id=passage_id).only("id", "position", "text").first()
    span = _passage_span(content, chunk.text) if chunk is not None else None
    centre = span[0] if span else 0
    start = max(0, centre - DOCUMENT_PAGE_MAX_CHARS // 2) if span else 0
    end = min(len(content), start + DOCUMENT_PAGE_MAX_CHARS)
    if span:
        start, end = min(start, span[0]), max(end, span[1])
        before, highlighted, after = content[start : span[0]], content[span[0] : span[1]], content[span[1] : end]
    else:
        before, highlighted, after = content[start:end], "", ""
    pages = max(1, -(-document.chunk_count // DOCUMENT_PAGE_PASSAGES))
    if passages_page is None:
        passages_page = chunk.position // DOCUMENT_PAGE_PASSAGES + 1 if chunk is not None else 1
    passages_page = min(max(1, passages_page), pages)
    first = (passages_page - 1) * DOCUMENT_PAGE_PASSAGES
    passages = list(
        Chunk.objects.filter(document=document, position__gte=first, position__lt=first + DOCUMENT_PAGE_PASSAGES)
        .order_by("position")
        .only("id", "position", "text", "token_count")
    )
    type_label = kind_label(filename=document.source_name, content_type=document.content_type)
    if type_label == KIND_LABELS["pdf"]:
        before, highlighted, after = _pdf_reflowed(before, highlighted, after)
        for passage in passages:
            passage.text = pdf_lines_reflowed(passage.text)
    return DocumentReading(
        document=document,
        before=before,
        highlighted=highlighted,
        after=after,
        text_start=start,
        text_end=end,
        passages=passages,
        highlighted_chunk=chunk,
        passages_page=passages_page,
        passages_pages=pages,
        type_label=type_label or ("" if document.source_name else "Pasted text"),
    )


@dataclass(frozen=True)
class FirstSteps:
    """The checklist of a new workspace: each step is done once anyone could see it was."""

    uploaded: bool  # the workspace holds a document the person may read
    asked: bool  # the person has asked a question in chat
    invited: bool  # someone else is a member, or has been invited

    @property
    def done(self) -> bool:
        return self.uploaded and self.asked and self.invited


def first_steps(*, reader: Reader, tenant: Tenant, user_id: int) -> FirstSteps:
    return FirstSteps(
        uploaded=documents_readable(reader).exists(),
        asked=Conversation.objects.filter(user_id=user_id).exists(),
        invited=members_list(tenant=tenant).exclude(user_id=user_id).exists()
        or invitations_open(tenant=tenant).exists(),
    )


def documents_list(*, reader: Reader) -> QuerySet[Document]:
    """The documents ``reader`` may read (within the collections they narrowed to), newest first."""
    return documents_readable(reader).select_related("created_by", "collection").defer("content")


def conversations_for(*, user_id: int) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user_id=user_id)


WITHHELD_ANSWER = (
    "This answer drew on documents you can no longer read, so it is not shown. Ask again to get an "
    "answer from the documents you can read now."
)


def messages_readable(*, messages: Sequence[Message], reader: Reader) -> list[Message]:
    """A conversation's messages as ``reader`` may see them now: an answer that drew on a document
    that they can no longer read (it still exists, in a collection closed to them) is withheld, its
    text may quote it, and such sources are left out. In memory only; one query when any message
    cites a document, none otherwise. (Sources of deleted documents stay: nothing left to protect.)"""
    cited = {source.get("document_id") for message in messages for source in (message.sources or [])}
    cited.discard(None)
    if not cited:
        return list(messages)
    sql, params = readable_collections_sql(reader)
    closed = set(
        Document.objects.filter(id__in=cited)
        .exclude(collection_id__in=RawSQL(sql, params))  # noqa: S611 - our SQL, values as parameters
        .values_list("id", flat=True)
    )
    for message in messages:
        sources = message.sources or []
        if any(source.get("document_id") in closed for source in sources):
            message.content = WITHHELD_ANSWER
            message.sources = [source for source in sources if source.get("document_id") not in closed]
    return list(messages)


UNEMBEDDED_INDEX = "chunk_unembedded_idx"  # ai.Chunk's partial index of chunks without an embedding


def schemas_with_embedding_work(*, schema_names: Sequence[str], other_than_model: str | None = None) -> list[str]:
    """The tenant schemas among ``schema_names`` that hold chunks without an embedding (or, given a
    model name, made by another model), so a run with nothing to do neither loads the model nor
    opens each schema in turn. (A document with an unembedded chunk is never ready, and embedding
    its last chunk makes it ready in the same transaction, so chunks are the whole story.)

    Two queries, whatever the number of tenants: the catalogue first leaves out every schema whose
    partial index of unembedded chunks has never held an entry (a B-tree is one metapage until its
    first entry; with a model name, whose chunk table has never held a row), which is cheap and
    never misses one; then one UNION ALL asks the others, a thousand schemas per query.
    """
    table = Chunk._meta.db_table
    probe, relation = (table, "r") if other_than_model is not None else (UNEMBEDDED_INDEX, "i")
    condition = "embedding IS NULL" + (" OR embedding_model <> %s" if other_than_model is not None else "")
    found: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
            "WHERE n.nspname = ANY(%s) AND c.relname = %s AND c.relkind = %s "
            "AND pg_relation_size(c.oid) > "
            "(CASE WHEN c.relkind = 'i' THEN current_setting('block_size')::int ELSE 0 END) "
            "ORDER BY n.nspname",
            [list(schema_names), probe, relation],
        )
        candidates = [row[0] for row in cursor.fetchall()]
        for start in range(0, len(candidates), 1000):
            batch = candidates[start : start + 1000]
            branches = [
                f"SELECT %s WHERE EXISTS (SELECT 1 FROM {connection.ops.quote_name(name)}.{table} WHERE {condition})"
                for name in batch
            ]
            params: list[str] = []
            for name in batch:
                params += [name, *([other_than_model] if other_than_model is not None else [])]
            cursor.execute(" UNION ALL ".join(branches), params)
            found += sorted(row[0] for row in cursor.fetchall())
    return found
