import pytest

from lawtune.kb.numerals import to_chinese, to_int


@pytest.mark.parametrize("text, value", [
    ("一", 1), ("十", 10), ("十二", 12), ("二十", 20), ("一百零一", 101), ("一百一十", 110),
    ("二百三十四", 234), ("一千零七十六", 1076), ("一千二百六十", 1260), ("一千零一十", 1010),
    ("两百", 200), ("〇", 0), ("一〇七六", 1076), ("二零二", 202), ("82", 82), ("８２", 82), ("一万零一", 10001),
])
def test_to_int(text, value):
    assert to_int(text) == value


@pytest.mark.parametrize("bad", ["", "abc", "十x", "第一"])
def test_to_int_rejects(bad):
    with pytest.raises(ValueError):
        to_int(bad)


def test_round_trip_every_article_number():
    assert all(to_int(to_chinese(n)) == n for n in range(1, 10000))
    assert to_chinese(1076) == "一千零七十六" and to_chinese(10) == "十" and to_chinese(110) == "一百一十"
