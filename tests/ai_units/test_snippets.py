"""Search snippets: plain text out of Markdown, and the sentences around the one nearest the query."""

from __future__ import annotations

from ai.snippets import SNIPPET_MAX_CHARS, plain_text, snippets_nearest


def test_markdown_becomes_the_text_a_reader_sees_one_block_a_line() -> None:
    text = "# Leave\n\nEveryone gets **25 days** a\nyear, see [the portal](https://hr.example).\n\n- carry over five"

    assert plain_text(text) == "Leave\nEveryone gets 25 days a year, see the portal.\ncarry over five"


def test_a_snippet_is_the_sentence_nearest_the_query_with_neighbours_that_fit() -> None:
    filler = " ".join(f"Sentence number {n} is about nothing much at all." for n in range(12))
    passage = f"{filler} The printer releases a job when you tap your badge. Colour needs approval. {filler}"

    def embed(texts: list[str]) -> list[list[float]]:  # the printing sentence alone points the query's way
        return [[1.0, 0.0] if "printer" in text else [0.0, 1.0] for text in texts]

    [snippet] = snippets_nearest(query_vector=[1.0, 0.0], passages=[passage], embed=embed)

    assert snippet.match == "The printer releases a job when you tap your badge."
    assert snippet.after.startswith(" Colour needs approval.")
    assert snippet.before.startswith("… ") and snippet.after.endswith(" …")
    assert len(snippet.text) <= SNIPPET_MAX_CHARS + 4
