"""Cleaning and normalization: what the model sees vs. what decides "same question"."""

from __future__ import annotations

import pytest

from lawtune.data.cleaning import clean_text, key_hash, normalize_key
from lawtune.data.conversations import check_messages


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<p>劳动合同&nbsp;到期</p>", "劳动合同 到期"),
        ("第一段<br>第二段<br/>第三段", "第一段\n第二段\n第三段"),
        ("离婚\u200b冷静期\ufeff", "离婚冷静期"),
        ("  多个   空格\t\u3000和制表符  ", "多个 空格 和制表符"),
        ("第一段\r\n\r\n\r\n\r\n第二段", "第一段\n\n第二段"),
        ("如果 a < b 且 c > d", "如果 a < b 且 c > d"),  # not tags
        # entities are decoded before tags are stripped, so the output never holds markup (issue 25 item 5)
        ("&lt;script&gt;alert(1)&lt;/script&gt;不是标签", "alert(1)不是标签"),
        ("&lt;b onclick=x&gt;粗体&lt;/b&gt;", "粗体"),
        ("a &lt; b 且 c &gt; d", "a < b 且 c > d"),  # an escaped comparison stays text
        ("&amp;lt;p&amp;gt;", "&lt;p&gt;"),  # double-escaped: decoded once, still text
        ("全角，标点。ＡＢＣ１２３", "全角，标点。ＡＢＣ１２３"),  # never rewritten
        ("控制\x00字符\x07", "控制字符"),
    ],
)
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_normalize_key_ignores_case_width_space_and_punctuation():
    assert normalize_key("离婚 怎么办？") == normalize_key("离婚怎么办?") == "离婚怎么办"
    assert normalize_key("ＡＢＣ") == normalize_key("abc")
    assert key_hash("离婚怎么办？", "答") == key_hash("离婚 怎么办", "答。")
    assert key_hash("ab", "c") != key_hash("a", "bc")  # parts are separated


@pytest.mark.parametrize(
    "messages",
    [[], [{"role": "system", "content": "只有系统提示"}], [{"role": "user", "content": "问"}],
     [{"role": "user", "content": "问"}, {"role": "tool", "content": "x"}], [{"role": "user", "content": 1}], "text"],
)
def test_check_messages_rejects(messages):
    assert check_messages(messages) is not None


def test_check_messages_accepts_system_then_turns():
    turns = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert check_messages(turns) is None
