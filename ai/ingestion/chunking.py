"""Split document text into overlapping, token-bounded chunks sized for the local embedding model."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ai.embedding.embedders import model_folder

if TYPE_CHECKING:
    from semchunk import Chunker
    from tokenizers import Tokenizer

# The model's tokenizer adds [CLS] and [SEP] to every input; both count against max_seq_length.
SPECIAL_TOKENS_PER_INPUT = 2
# Token counts of recently seen spans; bounded so a long-running worker does not grow without limit.
TOKEN_COUNT_CACHE_SIZE = 16_384

_tokenizer_lock = threading.Lock()
_tokenizer_instance: Tokenizer | None = None


@functools.cache
def max_sequence_length() -> int:
    """Word pieces the embedding model reads per input, special tokens included (256 for MiniLM)."""
    config = json.loads((model_folder() / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])


def max_chunk_tokens() -> int:
    """The largest chunk, in word pieces without special tokens, that the model embeds untruncated."""
    return max_sequence_length() - SPECIAL_TOKENS_PER_INPUT


def tokenizer() -> Tokenizer:
    """The model's own word-piece tokenizer, read once per process from the bundled model folder."""
    global _tokenizer_instance
    if _tokenizer_instance is None:
        with _tokenizer_lock:
            if _tokenizer_instance is None:
                _tokenizer_instance = _read_tokenizer()
    return _tokenizer_instance


def _read_tokenizer() -> Tokenizer:
    from tokenizers import Tokenizer

    loaded = Tokenizer.from_file(str(model_folder() / "tokenizer.json"))
    # tokenizer.json ships with truncation and padding at 128, which would make every long span
    # look exactly 128 tokens long; counting needs the real length.
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


def count_tokens(text: str) -> int:
    """Word pieces in ``text`` as the embedding model sees it, without [CLS]/[SEP]."""
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


def chunk_text(text: str, *, chunk_tokens: int = 256, overlap_tokens: int = 32) -> list[str]:
    """Split ``text`` at the most meaningful boundaries (paragraphs, lines, sentences, words).

    Each chunk holds at most ``chunk_tokens`` word pieces, capped so the model never truncates
    it, and shares up to ``overlap_tokens`` with its neighbour so a sentence cut at a boundary is
    still whole in one of them. Same input, same chunks.
    """
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be at least 1")
    if overlap_tokens < 0 or overlap_tokens >= chunk_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than chunk_tokens")
    if not text or text.isspace():
        return []
    limit = min(chunk_tokens, max_chunk_tokens())
    overlap = min(overlap_tokens, limit - 1) or None
    chunks: list[str] = []
    for piece in _split(text, limit, overlap=overlap):
        chunks.extend(_within_limit(piece, limit))
    return chunks


def _within_limit(piece: str, limit: int) -> list[str]:
    # semchunk sizes overlapping chunks from sub-chunks; where a sub-chunk boundary fell inside a
    # word, the joined text can tokenise longer than the parts did. Re-split those few, no overlap.
    if _token_counter()(piece) <= limit:
        return [piece]
    return [part for part in _split(piece, limit, overlap=None) if part.strip()]


def _split(text: str, limit: int, *, overlap: int | None) -> list[str]:
    # Given one string and no offsets, semchunk returns a flat list of chunk strings.
    return cast(list[str], _chunker(limit)(text, overlap=overlap))


@functools.cache
def _chunker(limit: int) -> Chunker:
    import semchunk

    return semchunk.chunkerify(_token_counter(), chunk_size=limit, memoize=False)


@functools.cache
def _token_counter() -> Callable[[str], int]:
    return functools.lru_cache(maxsize=TOKEN_COUNT_CACHE_SIZE)(count_tokens)
