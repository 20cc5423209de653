"""Property: arbitrary CSV bytes never crash prepare, and every record read is kept or dropped."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lawtune.data.prepare import run
from lawtune.errors import LawtuneError

HEADER = b"title,question,reply,is_best\n"
GOOD = "".join(f"第{i}个问题内容,,第{i}个回答内容,1\n" for i in range(3))
# Characters that stress a CSV parser and the cleaner, mixed with any text.
TRICKY = st.sampled_from(list(',"\n\r\t<>&;\x00\u200b\u3000\ufeff\\') + ["&nbsp;", "<br>", "问题", "回答", ",,1\n", '"",'])
TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=5)), max_size=40).map("".join)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_report(report: dict) -> None:
    assert report["rows_read"] == report["kept"] + report["dropped_total"]
    assert report["dropped_total"] == sum(report["dropped"].values())
    assert sum(report["splits"].values()) == report["kept"]


@SETTINGS
@given(body=st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_any_bytes_after_a_header_are_counted_never_raised(tmp_path_factory, body):
    folder = tmp_path_factory.mktemp("prop")
    source = folder / "any.csv"
    for encoding in ("utf-8", "gb18030"):
        source.write_bytes(HEADER + GOOD.encode(encoding) + body)
        report = run([source], folder / encoding, encoding=encoding, dev_ratio=0.3, test_ratio=0.3)
        check_report(report)
        assert report["rows_read"] >= 3


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes_at_all_give_a_report_or_a_lawtune_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("prop")
    source = folder / "any.csv"
    source.write_bytes(data)
    try:
        check_report(run([source], folder / "out"))
    except LawtuneError as error:
        assert str(error) and "\n" not in str(error).strip()
