"""The chat page with `serve --tools builtin` in a real headless Chromium: each tool call the server ran is shown
under the answer with its result, as text (a result holding markup is shown, never parsed).

    .venv/bin/pytest tests/serving/test_tools_browser.py -q
"""

from __future__ import annotations

import json
import shutil

import pytest

from test_browser import browser, pytestmark  # noqa: F401  (the same browser fixture and skip rule)


@pytest.fixture(scope="module")
def tools_server(tiny_model_dir, tmp_path_factory):
    from live_server import start_server

    from lawtune.serving.settings import ServeSettings

    folder = tmp_path_factory.mktemp("browser-tools") / "tiny-long"  # room for the tools' definitions
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 16384
    (folder / "config.json").write_text(json.dumps(config))
    live = start_server(ServeSettings(model=str(folder), dtype="float32", default_max_tokens=300, tools="builtin",
                                      tool_rounds=1))
    yield live
    live.stop()


def test_each_tool_call_and_its_result_show_under_the_answer_as_text(browser, tools_server):
    page = browser.new_page()

    # The page asks like any user (no tool_choice); the random tiny model would never call a tool, so this
    # test adds a forced first call to the page's real request. The server runs the real agent loop.
    def force_call(route):
        body = json.loads(route.request.post_data)
        body.update(tool_choice={"type": "function", "function": {"name": "severance_pay"}}, seed=3, max_tokens=300)
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/chat/completions", force_call)
    page.goto(tools_server.url + "/")
    page.wait_for_function("document.getElementById('status').textContent === '在线'", timeout=60_000)
    page.fill("#question", "工作3年5个月，月薪8000，协商解除，补偿多少")
    page.press("#question", "Enter")
    page.wait_for_function("document.querySelectorAll('.msg.assistant .copy').length === 1", timeout=120_000)
    tools = page.locator(".msg.assistant details.tools")
    assert tools.count() == 1 and "工具调用（" in tools.locator("summary").first.inner_text()
    call = tools.locator("details.call").first
    assert "severance_pay" in call.locator("summary").inner_text()
    call.locator("summary").click()
    result = call.locator(".result").inner_text()
    assert result.startswith("结果：") or result.startswith("错误：")  # the random model's figures, computed or refused

    # a stored answer whose trace holds markup: rendered as text after a reload, no element made from it
    page.evaluate("""() => {
      const history = JSON.parse(localStorage.getItem('lawtune-chat'));
      history[1].lawtune.tools.calls = [{round: 1, name: 'severance_pay', arguments: {note: '<img src=x id=evil>'},
        ok: false, result: {error: '<b id=bold>bad</b>'}}];
      localStorage.setItem('lawtune-chat', JSON.stringify(history));
    }""")
    page.reload()
    page.wait_for_function("document.querySelectorAll('.msg.assistant details.call').length === 1", timeout=30_000)
    assert page.locator("#evil").count() == 0 and page.locator("#bold").count() == 0
    shown = page.locator(".msg.assistant details.call")
    assert "<img src=x id=evil>" in shown.locator("summary").inner_text()
    shown.locator("summary").click()
    assert shown.locator(".result").inner_text() == "错误：<b id=bold>bad</b>"
    page.close()
