"""Chinese tool questions with their true arguments, one builder per built-in calculator.

    from lawtune.tools.cases import BUILDERS
    case = BUILDERS["severance_pay"](random.Random(0))
    case.question    # '我在公司干了3年零5个月，月薪八千，公司跟我协商解除劳动合同，经济补偿能拿多少？'
    case.arguments   # {'monthly_wage': 8000, 'years': 3, 'months': 5}
    case.short, case.ask   # the same question with one figure left out, and what the assistant asks back

Every builder draws the true values first and writes them into a question through `lawtune.tools.phrasing`
(8000 / 八千 / 0.8万 / 8k; 3年零5个月 / 三年五个月 / 41个月 / start and end dates; 2024-03-01 / 2024年3月1日),
so the arguments are right by construction. Arguments name what the question says and nothing more: a
duration given as 41个月 is `{"months": 41}`, given as 3年5个月 it is `{"years": 3, "months": 5}`, a span given by
dates is `start_date` / `end_date`; defaults are left out. The parameter names are the built-in tools' own
(`lawtune.tools.builtin_tools()`); `generate.check_builders` fails loudly if a tool's schema stops taking them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Callable

from lawtune.tools.phrasing import (DATE_STYLES, amount_styles, amount_text, date_text, duration_styles, duration_text,
                                    small_chinese)


@dataclass
class Case:
    tool: str
    question: str
    arguments: dict[str, Any]
    said: list[float] = field(default_factory=list)  # numbers the question states (the figure must differ)
    short: str | None = None  # the question with one needed figure left out
    ask: str | None = None  # the assistant's question back for it


# ---- how figures are written -----------------------------------------------------------------------------------
def wage(rng: random.Random, low: int = 3000, high: int = 30000) -> int:
    """A monthly wage: mostly round thousands (as people state them), sometimes hundreds."""
    step = rng.choice((1000, 1000, 500, 100))
    return rng.randrange(low // step, high // step + 1) * step


def money_phrase(rng: random.Random, value: int) -> str:
    style = rng.choice(amount_styles(value))
    text = amount_text(value, style)
    if style in ("arabic", "colloquial"):
        text += rng.choice(("元", "块", "", ""))
    elif style == "wan":
        text += rng.choice(("元", ""))
    elif style == "k":
        text = text if rng.random() < 0.7 else text.upper()
    return text


def span_phrase(rng: random.Random, years: int, months: int, year_key: str = "years",
                month_key: str = "months") -> tuple[str, dict[str, str]]:
    """A duration and the arguments that copy its words: 41个月 → {months: "41个月"}; 3年零5个月 → {years: "3年",
    months: "5个月"}; 三年半 → {years: "三年", months: "半"} (lawtune.tools.figures reads them)."""
    style = rng.choice(duration_styles(years, months))
    text = duration_text(years, months, style)
    if style == "months":
        return text, {month_key: text}
    if style == "half":
        return text, ({year_key: text[:-1], month_key: "半"} if years else {month_key: text})
    if not years:  # 5个月 / 五个月
        return text, {month_key: text}
    year_text, _, month_text = text.partition("年")
    arguments = {}
    if years:
        arguments[year_key] = year_text + "年"
    if months:
        arguments[month_key] = month_text.removeprefix("零")
    return text, arguments


def day_phrase(rng: random.Random, day: date) -> str:
    return date_text(day, rng.choice(DATE_STYLES))


def random_day(rng: random.Random, first: date = date(2018, 1, 1), last: date = date(2026, 6, 30)) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def hours_phrase(rng: random.Random, hours: int) -> str:
    return f"{small_chinese(hours) if rng.random() < 0.3 and hours <= 99 else hours}个小时" if rng.random() < 0.5 \
        else f"{hours}小时"


def polite(rng: random.Random, question: str) -> str:
    """A greeting or none in front, as people write to a lawyer."""
    return rng.choice(("", "", "", "律师你好，", "请问，", "你好，", "咨询一下，")) + question


# ---- 经济补偿 / 赔偿金 --------------------------------------------------------------------------------------------
LAWFUL_ENDINGS = ("公司跟我协商解除劳动合同", "公司提出协商解除", "公司裁员把我裁了", "合同到期公司不续签了",
                  "公司经营困难把我辞退了", "公司拖欠工资，我被迫辞职了", "公司不给交社保，我提出解除合同")
UNLAWFUL_ENDINGS = ("公司无故把我开除了", "公司违法辞退我", "老板一句话就把我辞退了，没有任何理由",
                    "公司违法解除了劳动合同")
SEVERANCE_ASKS = ("经济补偿能拿多少？", "补偿金是多少？", "能拿多少补偿？", "N+1里的N是多少钱？", "补偿怎么算，多少钱？")
UNLAWFUL_ASKS = ("能要多少赔偿？", "赔偿金是多少？", "违法解除的赔偿金怎么算，多少钱？", "能拿到多少钱的赔偿金？")


def severance_case(rng: random.Random) -> Case:
    pay = wage(rng)
    unlawful = rng.random() < 0.3
    pay_text = money_phrase(rng, pay)
    arguments: dict[str, Any] = {"monthly_wage": pay_text}
    if rng.random() < 0.3:  # a span given by its first and last day
        start = random_day(rng, date(2012, 1, 1), date(2024, 12, 31))
        end = start + timedelta(days=rng.randrange(200, 4000))
        start_text, end_text = day_phrase(rng, start), day_phrase(rng, end)
        service = f"我{start_text}入职，{end_text}是最后一天上班"
        arguments.update(start_date=start_text, end_date=end_text)
        said: list[float] = []
    else:
        years, months = rng.randrange(0, 16), rng.randrange(0, 12)
        if years == months == 0:
            years = 2
        text, span_args = span_phrase(rng, years, months)
        arguments.update(span_args)
        service = rng.choice((f"我在公司干了{text}", f"工作了{text}", f"在这家单位上班{text}", f"入职{text}"))
        said = [years, months, years * 12 + months]
    wage_part = rng.choice((f"月薪{pay_text}", f"月工资{pay_text}", f"每个月工资{pay_text}",
                            f"离职前平均工资{pay_text}一个月"))
    ending = rng.choice(UNLAWFUL_ENDINGS if unlawful else LAWFUL_ENDINGS)
    ask = rng.choice(UNLAWFUL_ASKS if unlawful else SEVERANCE_ASKS)
    if unlawful:
        arguments["unlawful"] = True
    parts = [service, wage_part, ending]
    if rng.random() < 0.5:
        parts[0], parts[1] = parts[1], parts[0]
    question = polite(rng, "，".join(parts) + "，" + ask)
    if rng.random() < 0.5:
        short = polite(rng, f"{service}，{ending}，{ask}")
        reply = "计算经济补偿需要您解除劳动合同前十二个月的平均月工资（应得工资，含奖金、津贴和补贴）。请问您的月工资是多少？"
    else:
        short = polite(rng, f"{wage_part}，{ending}，{ask}")
        reply = "经济补偿按在本单位的工作年限计算。请问您在这家单位工作了多长时间？也可以告诉我入职日期和最后工作日。"
    return Case("severance_pay", question, arguments, [pay, *said], short, reply)


# ---- 未签书面合同的二倍工资 -----------------------------------------------------------------------------------------
def double_wage_case(rng: random.Random) -> Case:
    pay = wage(rng)
    pay_text = money_phrase(rng, pay)
    arguments: dict[str, Any] = {"monthly_wage": pay_text}
    if rng.random() < 0.4:
        start = random_day(rng, date(2019, 1, 1), date(2025, 6, 30))
        stop = start + timedelta(days=rng.randrange(45, 420))
        start_text, stop_text = day_phrase(rng, start), day_phrase(rng, stop)
        if rng.random() < 0.5:
            arguments.update(start_date=start_text, contract_date=stop_text)
            story = f"我{start_text}入职，公司一直没签劳动合同，{stop_text}才补签"
        else:
            arguments.update(start_date=start_text, end_date=stop_text)
            story = f"{start_text}开始上班，公司始终没跟我签书面合同，{stop_text}是我最后一天上班"
        said: list[float] = []
    else:
        months = rng.randrange(3, 16)
        count = f"{small_chinese(months)}个月" if rng.random() < 0.3 else f"{months}个月"
        arguments["months_without_contract"] = count
        story = rng.choice((f"入职{count}了公司一直没跟我签劳动合同", f"干了{count}，一直没签书面劳动合同",
                            f"公司{count}都没跟我签合同"))
        said = [months, months - 1]
    wage_part = rng.choice((f"月薪{pay_text}", f"工资每月{pay_text}", f"月工资{pay_text}"))
    ask = rng.choice(("能要多少二倍工资？", "双倍工资差额是多少？", "未签合同的二倍工资能拿多少？",
                      "公司要额外付我多少钱？"))
    question = polite(rng, f"{story}，{wage_part}，{ask}")
    short = polite(rng, f"{story}，{ask}")
    reply = "二倍工资差额按您的月工资计算。请问您每个月的工资是多少？"
    return Case("double_wage_no_contract", question, arguments, [pay, *said], short, reply)


# ---- 加班费 --------------------------------------------------------------------------------------------------------
def overtime_case(rng: random.Random) -> Case:
    pay = wage(rng, 3000, 20000)
    pay_text = money_phrase(rng, pay)
    arguments: dict[str, Any] = {"monthly_wage": pay_text}
    kinds = rng.sample((("weekday_hours", "工作日晚上加班", "平时下班后加班"),
                        ("rest_day_hours", "周末加班", "休息日上班（没有安排补休）"),
                        ("holiday_hours", "法定节假日加班", "国庆节上班")), k=rng.choice((1, 1, 2, 3)))
    parts, said = [], [pay]
    for key, *names in kinds:
        hours = rng.choice((4, 6, 8, 10, 12, 16, 20, 24, 30, 36)) if key == "weekday_hours" else rng.choice((8, 16, 24))
        hours_text = hours_phrase(rng, hours)
        arguments[key] = hours_text
        parts.append(f"{rng.choice(names)}{hours_text}")
        said.append(hours)
    if "rest_day_hours" in arguments and "补休" not in "".join(parts):
        parts.append("周末的都没调休")
    wage_part = rng.choice((f"月工资{pay_text}", f"月薪{pay_text}", f"加班费基数是{pay_text}"))
    ask = rng.choice(("加班费应该给多少？", "加班费怎么算，一共多少？", "公司应付多少加班费？"))
    question = polite(rng, f"{wage_part}，这个月{'，'.join(parts)}，{ask}")
    short = polite(rng, f"这个月{'，'.join(parts)}，{ask}")
    reply = "加班费以正常工作时间的月工资为基数计算。请问您的月工资是多少？"
    return Case("overtime_pay", question, arguments, said, short, reply)


# ---- 仲裁时效 / 诉讼时效 ---------------------------------------------------------------------------------------------
def arbitration_case(rng: random.Random) -> Case:
    day = random_day(rng)
    when = day_phrase(rng, day)
    if rng.random() < 0.25:
        arguments = {"wage_arrears_during_employment": True, "employment_end_date": when}
        question = polite(rng, rng.choice((f"在职期间公司一直拖欠工资，我{when}离职了，最晚什么时候要申请劳动仲裁？",
                                           f"在职时公司拖欠了我好几个月工资，劳动关系{when}结束，仲裁时效到哪天？")))
        short = polite(rng, "在职期间公司一直拖欠工资，我已经离职了，最晚什么时候要申请劳动仲裁？")
        reply = "在职期间拖欠工资的，仲裁时效自劳动关系终止之日起算。请问您是哪一天离职的（劳动关系终止的日期）？"
    else:
        arguments = {"known_date": when}
        event = rng.choice((f"公司{when}把我辞退了", f"{when}公司通知我解除劳动合同", f"我{when}被公司违法开除",
                            f"{when}我发现公司克扣了我的提成"))
        ask = rng.choice(("最晚哪天申请仲裁？", "劳动仲裁的时效到什么时候？", "我最晚什么时候要去申请劳动仲裁？",
                          "仲裁时效截止到哪一天？"))
        question = polite(rng, f"{event}，{ask}")
        short = polite(rng, f"公司把我辞退了，{ask}")
        reply = "仲裁时效从您知道或者应当知道权利被侵害之日起算。请问公司是哪一天辞退您的？"
    return Case("arbitration_deadline", question, arguments, [], short, reply)


def litigation_case(rng: random.Random) -> Case:
    day = random_day(rng)
    when = day_phrase(rng, day)
    event = rng.choice((f"朋友借了我钱，约定{when}还，到期没还", f"我{when}被邻居打伤了，知道是他打的",
                        f"对方{when}交货时我发现货物质量有问题", f"{when}我得知对方侵占了我的房子",
                        f"借条上写的还款日是{when}，对方一直没还"))
    ask = rng.choice(("诉讼时效到哪天？", "最晚什么时候起诉？", "我最晚哪天要去法院起诉？", "起诉的时效什么时候到期？"))
    question = polite(rng, f"{event}，{ask}")
    short = polite(rng, f"朋友借钱一直不还，{ask}")
    reply = "诉讼时效从您知道或者应当知道权利受到损害以及义务人之日起算，借款约定了还款日的从还款日起算。请问约定的还款日期是哪一天？"
    return Case("litigation_deadline", question, {"known_date": when}, [], short, reply)


# ---- 试用期 -------------------------------------------------------------------------------------------------------
def probation_case(rng: random.Random) -> Case:
    arguments: dict[str, Any] = {}
    said: list[float] = []
    if rng.random() < 0.15:
        arguments["open_ended"] = True
        term = "签的是无固定期限劳动合同"
    else:
        years, months = rng.choice(((0, 6), (1, 0), (2, 0), (3, 0), (5, 0), (0, 10), (1, 6), (0, 4), (4, 0)))
        text, arguments = span_phrase(rng, years, months, "contract_years", "contract_months")
        term = rng.choice((f"劳动合同签了{text}", f"合同期限{text}", f"跟公司签了{text}的合同"))
        said += [years, months, years * 12 + months]
    ask = "试用期最长能约定多久？"
    if rng.random() < 0.6:
        pay = wage(rng, 3000, 20000)
        pay_text = money_phrase(rng, pay)
        arguments["agreed_wage"] = pay_text
        term += f"，合同约定月工资{pay_text}"
        ask = rng.choice(("试用期最长多久，试用期工资最低能给多少？", "试用期多长合法？试用期工资最少多少？"))
        said.append(pay)
    question = polite(rng, f"{term}，{ask}")
    short = polite(rng, f"刚入职新公司，{ask}")
    reply = "试用期的上限取决于劳动合同期限。请问您的劳动合同签了多长时间（或者是无固定期限合同）？"
    return Case("probation_limits", question, arguments, said, short, reply)


# ---- 带薪年休假 -----------------------------------------------------------------------------------------------------
def annual_leave_case(rng: random.Random) -> Case:
    if rng.random() < 0.3:
        first = random_day(rng, date(1998, 1, 1), date(2022, 12, 31))
        as_of = random_day(rng, date(2024, 1, 1), date(2026, 6, 30))
        first_text, as_of_text = day_phrase(rng, first), day_phrase(rng, as_of)
        arguments: dict[str, Any] = {"first_work_date": first_text, "as_of": as_of_text}
        story = f"我{first_text}参加工作，算到{as_of_text}"
        said: list[float] = []
    else:
        years = rng.randrange(1, 31)
        count = small_chinese(years) if rng.random() < 0.3 else str(years)
        arguments = {"cumulative_work_years": f"{count}年"}
        story = rng.choice((f"我累计工作{count}年了", f"参加工作{count}年", f"我工作了{count}年（包括之前的单位）"))
        said = [years]
    ask = rng.choice(("每年能休几天带薪年假？", "带薪年休假有多少天？", "年假应该有几天？"))
    question = polite(rng, f"{story}，{ask}")
    short = polite(rng, f"我在公司上班，{ask}")
    reply = "年休假天数按累计工作年限（包括在其他单位的年限）确定。请问您一共参加工作多少年了？"
    return Case("annual_leave_days", question, arguments, said, short, reply)


BUILDERS: dict[str, Callable[[random.Random], Case]] = {
    "severance_pay": severance_case,
    "double_wage_no_contract": double_wage_case,
    "overtime_pay": overtime_case,
    "arbitration_deadline": arbitration_case,
    "litigation_deadline": litigation_case,
    "probation_limits": probation_case,
    "annual_leave_days": annual_leave_case,
}
