"""`lawtune prepare` on tricky CSVs: encodings, broken rows with line numbers, policies, cleaning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from csv_fixtures import EXPECTED_DROPS, EXPECTED_KEPT, EXPECTED_READ, TRICKY_CSV

from lawtune.data.prepare import run
from lawtune.errors import LawtuneError

# Generous dev/test shares so the 8 kept rows fill all three splits by hash alone.
RATIOS = {"dev_ratio": 0.3, "test_ratio": 0.3}


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "qa.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for split in ("train", "dev", "test") for line in (out / f"{split}.jsonl").open(encoding="utf-8")]


def by_line(out: Path) -> dict[int, list[dict]]:
    return {row["meta"]["line"]: row["conversations"] for row in rows(out)}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_tricky_csv_counts_and_lines_in_every_encoding(tmp_path, encoding):
    source = write(tmp_path, TRICKY_CSV, encoding)
    report = run([source], tmp_path / "out", **RATIOS)

    assert report["sources"][0]["encoding"] == encoding
    assert report["rows_read"] == EXPECTED_READ
    assert report["kept"] == EXPECTED_KEPT
    assert report["rows_read"] == report["kept"] + report["dropped_total"]
    assert {reason: [int(ref.rsplit(":", 1)[1]) for ref in refs] for reason, refs in report["dropped_lines"].items()} == EXPECTED_DROPS
    assert sum(report["splits"].values()) == report["kept"]
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8")) == report
    # the Chinese text survived decoding unchanged
    assert by_line(tmp_path / "out")[6][0]["content"] == '他说"欠条"有效吗'


def test_cleaning_and_question_composition(tmp_path):
    kept = by_line_of(tmp_path, TRICKY_CSV)
    assert kept[4][0]["content"] == "工伤认定 需要多久？\n单位不给认定怎么办"  # tags and &nbsp; gone, body appended
    assert kept[4][1]["content"] == "工伤认定申请受理后六十日内作出决定。\n单位不配合的，可以自行申请。"  # newline kept
    assert kept[12][0]["content"] == "离婚冷静期 是多久"  # zero-width removed, space run collapsed
    assert kept[14][0]["content"] == "房东不退押金怎么办"  # body copying the title dropped
    assert kept[15][0]["content"] == "公司欠薪三个月了怎么办"  # body that extends the title used alone


def by_line_of(tmp_path: Path, text: str, **options) -> dict[int, list[dict]]:
    run([write(tmp_path, text)], tmp_path / "out", **{**RATIOS, **options})
    return by_line(tmp_path / "out")


def test_no_clean_keeps_html(tmp_path):
    kept = by_line_of(tmp_path, TRICKY_CSV, clean=False)
    assert kept[4][0]["content"].startswith("<p>工伤认定&nbsp;")


@pytest.mark.parametrize(
    ("policy", "expected_lines"),
    [
        ("all", {2, 3, 4, 6, 12, 14, 15, 16}),
        ("best", {2, 4, 6, 12, 14, 15}),  # 3 and 16 are is_best=0
        ("best-per-title", {2, 4, 6, 12, 14, 15, 16}),  # 3 loses to 2; 16 is its title's only answer
    ],
)
def test_is_best_policies(tmp_path, policy, expected_lines):
    report = run([write(tmp_path, TRICKY_CSV)], tmp_path / "out", is_best=policy, **RATIOS)
    assert set(by_line(tmp_path / "out")) == expected_lines
    assert report["rows_read"] == report["kept"] + report["dropped_total"]


def test_best_per_title_prefers_a_later_best_answer(tmp_path):
    text = "title,question,reply,is_best\n" + "".join(
        f"问题内容{i},,问题{i}的普通回答内容,0\n问题内容{i},,问题{i}的最佳回答内容,1\n" for i in range(4)
    )
    report = run([write(tmp_path, text)], tmp_path / "out", is_best="best-per-title", **RATIOS)
    answers = [conv[1]["content"] for conv in by_line(tmp_path / "out").values()]
    assert sorted(answers) == [f"问题{i}的最佳回答内容" for i in range(4)]
    assert report["dropped"] == {"not_best_for_title": 4}


@pytest.mark.parametrize(("mode", "line4_user"), [("title", "工伤认定 需要多久？"), ("question", "单位不给认定怎么办")])
def test_user_text_policy(tmp_path, mode, line4_user):
    assert by_line_of(tmp_path, TRICKY_CSV, user_text=mode)[4][0]["content"] == line4_user


def test_system_prompt_and_length_filters(tmp_path):
    report = run([write(tmp_path, TRICKY_CSV)], tmp_path / "out", system_prompt="你是一名律师。", min_chars=10, max_chars=30, **RATIOS)
    conversations = rows(tmp_path / "out")
    assert conversations and all(row["conversations"][0] == {"role": "system", "content": "你是一名律师。"} for row in conversations)
    assert report["dropped"]["too_short"] > 0 and report["dropped"]["too_long"] > 0
    for row in conversations:
        assert all(10 <= len(turn["content"]) <= 30 for turn in row["conversations"][1:])


def test_no_dedupe_keeps_repeats(tmp_path):
    report = run([write(tmp_path, TRICKY_CSV)], tmp_path / "out", dedupe=False, **RATIOS)
    assert "duplicate" not in report["dropped"] and report["kept"] == EXPECTED_KEPT + 2


def test_missing_required_column_names_expected_and_found(tmp_path):
    source = write(tmp_path, "title,answer,is_best\n问题,答案,1\n")
    with pytest.raises(LawtuneError, match=r"missing column\(s\) reply.*expected title,question,reply,is_best.*found 'title,answer,is_best'"):
        run([source], tmp_path / "out")


def test_is_best_policy_needs_the_column(tmp_path):
    source = write(tmp_path, "title,reply\n问题一二三,答案一二三\n")
    with pytest.raises(LawtuneError, match="is_best"):
        run([source], tmp_path / "out", is_best="best")


def test_extra_and_reordered_columns(tmp_path):
    text = "id,reply,title\n" + "".join(f"{i},回答内容第{i}条,问题内容第{i}条\n" for i in range(6))
    report = run([write(tmp_path, text)], tmp_path / "out", **RATIOS)
    assert report["kept"] == 6
    assert by_line(tmp_path / "out")[2] == [{"role": "user", "content": "问题内容第0条"}, {"role": "assistant", "content": "回答内容第0条"}]


def test_undecodable_bytes_are_a_counted_drop(tmp_path):
    good = "".join(f"问题内容第{i}条,,回答内容第{i}条,1\n" for i in range(5))
    data = ("title,question,reply,is_best\n" + good).encode() + "坏的问题,,".encode() + b"\xff\xfe bad,1\n"
    source = tmp_path / "bad.csv"
    source.write_bytes(data)
    report = run([source], tmp_path / "out", encoding="utf-8", **RATIOS)
    assert report["dropped"] == {"bad_encoding": 1} and report["dropped_lines"]["bad_encoding"] == [f"{source}:7"]


def test_dropped_line_list_is_capped_but_count_exact(tmp_path):
    good = "".join(f"问题内容第{i}条,,回答内容第{i}条,1\n" for i in range(5))
    bad = "只有两列,1\n" * 1500
    report = run([write(tmp_path, "title,question,reply,is_best\n" + good + bad)], tmp_path / "out", **RATIOS)
    assert report["dropped"] == {"bad_columns": 1500}
    assert len(report["dropped_lines"]["bad_columns"]) == report["dropped_lines_cap"] == 1000


def test_invalid_options_are_one_error(tmp_path):
    with pytest.raises(LawtuneError, match=r"unknown option 'seeed' \(did you mean 'seed'\?\)"):
        run([write(tmp_path, TRICKY_CSV)], tmp_path / "out", seeed=1)
    with pytest.raises(LawtuneError, match="dev_ratio"):
        run([write(tmp_path, TRICKY_CSV)], tmp_path / "out", dev_ratio=0.6, test_ratio=0.6)


def test_answers_ending_mid_sentence_are_kept_and_counted(tmp_path):
    csv = ("title,question,reply,is_best\n"
           "工资被拖欠怎么办,,可以申请劳动仲裁。,1\n"
           "离婚财产怎么分,,夫妻共同财产一般平均分割，但要考虑子女和女方的权益以及,1\n"
           "欠条有效吗,,写明金额和日期并签名的欠条一般有效。,1\n"
           "押金不退怎么办,,可以协商，协商不成可以起诉。,1\n")
    report = run([write(tmp_path, csv)], tmp_path / "out", **RATIOS)
    assert report["kept"] == 4
    assert report["answers_ending_mid_sentence"] == 1
    assert report["answers_ending_mid_sentence_lines"] == [f"{tmp_path / 'qa.csv'}:3"]
