"""The chat page with `serve --kb` in a real headless Chromium: the retrieved articles and the citation verdicts
appear as expandable quotes under the answer; with `--degrade-to-kb` a paused service keeps its input open and
answers with the articles.

    .venv/bin/pytest tests/serving/test_kb_browser.py -q
"""

from __future__ import annotations

import pytest

from test_browser import browser, pytestmark  # noqa: F401  (the same browser fixture and skip rule)


@pytest.fixture(scope="module")
def kb_server(tiny_run_dir, bundled_kb):
    from live_server import start_server

    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=2, default_max_tokens=8,
                                      serve_base=False, kb=str(bundled_kb), degrade_to_kb=True))
    yield live
    live.stop()


def _ask(page, question: str, answers: int) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_function(f"document.querySelectorAll('.msg.assistant .copy').length === {answers}", timeout=60_000)


def test_answer_shows_the_articles_as_expandable_quotes(browser, kb_server):
    page = browser.new_page()
    page.goto(kb_server.url + "/")
    page.wait_for_function("document.getElementById('status').textContent === '在线'", timeout=60_000)
    _ask(page, "离婚需要什么材料？", 1)
    refs = page.locator(".msg.assistant details.refs")
    assert refs.count() == 1 and "参考法条（3）" in refs.locator("summary").first.inner_text()
    quotes = refs.locator("details.ref")
    assert quotes.count() == 3
    assert not quotes.first.locator("blockquote").is_visible()  # closed until clicked
    refs.locator("summary").first.click()
    quotes.first.locator("summary").click()
    assert quotes.first.locator("summary").inner_text().startswith("《民法典》第")
    assert quotes.first.locator("blockquote").is_visible() and quotes.first.locator("blockquote").inner_text()
    # after a reload the quotes come back from the stored conversation
    page.reload()
    page.wait_for_function("document.querySelectorAll('.msg.assistant details.ref').length === 3", timeout=30_000)
    page.close()


def test_paused_with_degrade_to_kb_keeps_the_input_and_answers_with_articles(browser, kb_server):
    switch = kb_server.app.state.gateway.switch
    switch.pause("系统维护中。")
    try:
        page = browser.new_page()
        page.goto(kb_server.url + "/")
        page.wait_for_function("document.getElementById('status').textContent === '已暂停'", timeout=30_000)
        assert page.locator("#ask").is_visible() and "系统维护中" in page.locator("#notice").inner_text()
        _ask(page, "离婚需要什么材料？", 1)
        answer = page.locator(".msg.assistant").first
        assert answer.inner_text().startswith("系统维护中。") and "《民法典》第" in answer.inner_text()
        assert "服务降级" in answer.locator("details.refs summary").first.inner_text()
        page.close()
    finally:
        switch.resume()


def test_the_attribution_line_and_the_quoted_article_are_shown(browser, kb_server):
    """A stored answer whose `lawtune` field names what it repeated (the tiny model never quotes an article): the
    page shows the line under the answer and marks the quoted reference."""
    import json

    from lawtune.kb.rag import Rag
    from lawtune.serving.kb import extension

    with Rag.open(kb_server.app.state.settings.kb) as rag:
        augmented = rag.augment([{"role": "user", "content": "离婚后孩子的抚养费谁出？"}])
        article = augmented.hits[0].item
        answer = "根据法律规定，" + article.text.split(" ", 1)[-1][:30]
        field = extension(rag, augmented)(answer)
    assert field["attribution"]
    stored = [{"role": "user", "content": "离婚后孩子的抚养费谁出？"}, {"role": "assistant", "content": answer, "lawtune": field}]
    page = browser.new_page()
    page.goto(kb_server.url + "/")
    page.evaluate("stored => localStorage.setItem('lawtune-chat', stored)", json.dumps(stored, ensure_ascii=False))
    page.reload()
    page.wait_for_function("document.querySelectorAll('.msg.assistant .attribution').length === 1", timeout=30_000)
    assert page.locator(".msg.assistant .attribution").inner_text() == field["attribution"]
    assert "回答引用了其内容" in page.locator(".msg.assistant details.ref summary").first.text_content()  # closed: not rendered
    page.close()
