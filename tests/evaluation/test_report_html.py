"""The before/after HTML report escapes everything it shows (issue 25 item 5): a prediction, a reference or a
model name holding markup is text in the report people mail around, never live HTML.

    .venv/bin/pytest tests/evaluation/test_report_html.py -q
"""

from __future__ import annotations

from lawtune.evaluation.report import render_html

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_report_escapes_predictions_references_and_names():
    question = {"prompt": HOSTILE, "reference": HOSTILE, "base": HOSTILE, "tuned": "正常回答 & <b>粗体</b>",
                "base_rouge_l": 1.0, "tuned_rouge_l": 2.0, "base_flags": [], "tuned_flags": []}
    html = render_html({"title": "t", "subtitle": HOSTILE, "rows": [], "generation": {"note": HOSTILE},
                        "questions": [question], "gate": None, "base_name": HOSTILE, "tuned_name": "tuned",
                        "metrics_png": "iVBORw0KGgo=", "distributions_png": "iVBORw0KGgo=", "loss_png": None})
    assert "<script" not in html and "<img src=x" not in html and "<b>粗体" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;b&gt;粗体&lt;/b&gt;" in html and "正常回答 &amp; " in html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html  # the report's own markup is untouched
