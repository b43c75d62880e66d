"""Token-aware chunking with the embedding model's own tokenizer."""

from __future__ import annotations

import re

import pytest
from tokenizers import Tokenizer

from ai.embedding.embedders import model_folder
from ai.ingestion.chunking import chunk_text, count_tokens, max_chunk_tokens

TOPICS = ["invoices", "holidays", "security", "onboarding", "pricing", "backups", "support", "hiring"]


def long_document() -> str:
    paragraphs = []
    for number, topic in enumerate(TOPICS * 3):
        sentences = [
            f"Paragraph {number} explains how the team handles {topic} in case {number * 10 + step}."
            for step in range(9)
        ]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


@pytest.fixture(scope="module")
def model_tokenizer() -> Tokenizer:
    # Loaded independently of ai.ingestion.chunking so its counting is checked, not reused.
    tokenizer = Tokenizer.from_file(str(model_folder() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def overlap_between(left: str, right: str) -> str:
    for size in range(min(len(left), len(right)), 0, -1):
        if left.endswith(right[:size]):
            return right[:size]
    return ""


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_empty_or_blank_text_gives_no_chunks(text: str) -> None:
    assert chunk_text(text) == []


def test_short_text_is_a_single_chunk() -> None:
    assert chunk_text("Cats purr when they are content.") == ["Cats purr when they are content."]


def test_default_chunks_fit_the_models_sequence_length_with_special_tokens(model_tokenizer: Tokenizer) -> None:
    chunks = chunk_text(long_document())

    assert len(chunks) > 3
    for chunk in chunks:
        assert len(model_tokenizer.encode(chunk).ids) <= 256, chunk


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(64, 16), (100, 0), (40, 8)])
def test_chunks_never_exceed_the_requested_size(
    chunk_tokens: int, overlap_tokens: int, model_tokenizer: Tokenizer
) -> None:
    chunks = chunk_text(long_document(), chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)

    sizes = [len(model_tokenizer.encode(chunk, add_special_tokens=False).ids) for chunk in chunks]
    assert max(sizes) <= chunk_tokens
    assert max(sizes) > chunk_tokens // 2


def test_requests_above_the_model_limit_are_capped(model_tokenizer: Tokenizer) -> None:
    chunks = chunk_text(long_document(), chunk_tokens=2000, overlap_tokens=0)

    assert max_chunk_tokens() == 254
    assert max(len(model_tokenizer.encode(chunk).ids) for chunk in chunks) <= 256


def test_the_tail_of_each_chunk_reappears_at_the_head_of_the_next() -> None:
    chunks = chunk_text(long_document(), chunk_tokens=64, overlap_tokens=16)

    assert len(chunks) > 5
    for left, right in zip(chunks, chunks[1:], strict=False):
        shared = overlap_between(left, right)
        assert shared.strip(), (left, right)
        assert 0 < count_tokens(shared) <= 16


def test_without_overlap_chunks_tile_the_text_exactly() -> None:
    text = long_document()

    chunks = chunk_text(text, chunk_tokens=64, overlap_tokens=0)

    assert re.sub(r"\s+", "", "".join(chunks)) == re.sub(r"\s+", "", text)


def test_no_sentence_is_lost_with_overlap() -> None:
    text = long_document()
    chunks = chunk_text(text, chunk_tokens=64, overlap_tokens=16)

    sentences = re.findall(r"Paragraph \d+ [^.]+\.", text)
    missing = [sentence for sentence in sentences if not any(sentence in chunk for chunk in chunks)]
    # A sentence may straddle two chunks, but each of its words is still somewhere.
    for sentence in missing:
        assert all(any(word in chunk for chunk in chunks) for word in sentence.split())
    assert len(missing) < len(sentences) / 2


def test_paragraph_boundaries_are_preferred_split_points() -> None:
    paragraphs = [f"Short paragraph {number} about {topic}." for number, topic in enumerate(TOPICS)]

    chunks = chunk_text("\n\n".join(paragraphs), chunk_tokens=20, overlap_tokens=0)

    assert all(chunk in paragraphs or "\n\n" in chunk for chunk in chunks)


def test_a_giant_word_is_still_split_within_the_limit(model_tokenizer: Tokenizer) -> None:
    url = "https://example.com/" + "-".join(f"segment{number}" for number in range(600))

    chunks = chunk_text(f"See {url} for details.", chunk_tokens=128, overlap_tokens=16)

    assert len(chunks) > 1
    assert max(len(model_tokenizer.encode(chunk, add_special_tokens=False).ids) for chunk in chunks) <= 128


def test_chunking_is_deterministic() -> None:
    text = long_document()

    assert chunk_text(text) == chunk_text(text)
    assert chunk_text(text, chunk_tokens=50, overlap_tokens=10) == chunk_text(text, chunk_tokens=50, overlap_tokens=10)


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(0, 0), (10, 10), (10, -1)])
def test_nonsensical_sizes_are_refused(chunk_tokens: int, overlap_tokens: int) -> None:
    with pytest.raises(ValueError):
        chunk_text("some text", chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)


def test_count_tokens_ignores_the_shipped_128_token_truncation() -> None:
    assert count_tokens("word " * 300) == 300


def test_an_oversized_merged_chunk_is_split_again() -> None:
    # semchunk builds overlapping chunks from sub-chunks; this is the guard for a join that grew.
    from ai.ingestion.chunking import _within_limit

    piece = " ".join(f"token{number}" for number in range(200))

    parts = _within_limit(piece, 50)

    assert len(parts) > 1
    assert all(count_tokens(part) <= 50 for part in parts)
    assert " ".join(parts) == piece
