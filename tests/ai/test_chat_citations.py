"""Inline citations: the prompt numbers the passages and asks for [1], [2] markers; each source
says which numbers are its passages; a rendered answer links its markers to those passages."""

from ai.chat.citations import citations_link
from ai.chat.services import _prompt, _sources
from ai.markdown import markdown_html
from ai.selectors import SearchHit


def hit(chunk_id: int, document_id: int, title: str, distance: float) -> SearchHit:
    return SearchHit(
        document_id=document_id, title=title, chunk_id=chunk_id, text=f"passage {chunk_id}", distance=distance
    )


HITS = [hit(12, 3, "Handbook", 0.1), hit(40, 7, "Parking <rules>", 0.2), hit(13, 3, "Handbook", 0.3)]


def test_the_prompt_numbers_the_passages_and_asks_for_markers():
    content, passages = _prompt("Where do I park?", HITS)

    assert '<document index="1" title="Handbook" id="3">\npassage 12\n</document>' in content
    assert '<document index="2" title="Parking &lt;rules&gt;" id="7">' in content
    assert '<document index="3" title="Handbook" id="3">\npassage 13' in content
    assert content.index("[1]") < content.index("<documents>\n")  # the instruction comes before the passages
    assert content.endswith("Where do I park?")
    assert passages == ["passage 12", "passage 40", "passage 13"]


def test_each_source_says_which_markers_are_its_passages():
    sources = _sources(HITS)

    assert [(s["document_id"], s["chunk_ids"], s["citations"]) for s in sources] == [
        (3, [12, 13], [1, 3]),
        (7, [40], [2]),
    ]


def test_markers_become_links_to_their_passages_and_the_rest_is_left_alone():
    sources = _sources(HITS)
    answer = (
        "Park by lottery [2], see the handbook [1][3] and [1, 2].\n\n"
        "Not a citation: [9], `code [1]`, and [a link [1]](https://example.com).\n\n"
        "```\nlist[1]\n```"
    )

    html = citations_link(markdown_html(answer), sources)

    assert '<a class="cite" href="/documents/7/?passage=40#highlight" title="Parking &lt;rules&gt;">[2]</a>' in html
    assert 'href="/documents/3/?passage=12#highlight" title="Handbook">[1]</a>' in html
    assert 'href="/documents/3/?passage=13#highlight" title="Handbook">[3]</a>' in html
    assert html.count('class="cite"') == 5  # [2], [1], [3], and both numbers of [1, 2]
    assert "[9]" in html and "<code>code [1]</code>" in html and "list[1]" in html


def test_an_answer_without_sources_or_markers_is_unchanged():
    html = markdown_html("Plain [1] text with <b>no</b> sources.")

    assert citations_link(html, []) == html
    assert citations_link(html, None) == html
