"""Labour-law calculators: 经济补偿 / 赔偿金, 二倍工资, 加班费, 试用期, 年休假 (docs/tools.md).

    from lawtune.tools.labor import severance_pay
    severance_pay(monthly_wage=8000, years=3, months=5)["result"]    # 28000 (3.5 个月 × 8000 元)

Each function is a tool as it stands: the signature is the JSON Schema the model sees (units in the field
descriptions), the return value is {"result", "unit", "details", "formula", "articles"} with the formula in
words and the articles it rests on, and arguments that pass the schema but make no legal sense raise
ToolError with a message for the model. Money is computed in Decimal and rounded to the fen (half up).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import Field

from lawtune.tools.figures import Amount, Hours, OptionalAmount, OptionalMonths, OptionalYears
from lawtune.tools.periods import Day, Span, add_months, months_and_days, service_length
from lawtune.tools.tool import ToolError, labels, needs_one_of, required_when_said, said_about, said_as

CONTRACT_LAW = "《劳动合同法》"
CONTRACT_REGULATION = "《劳动合同法实施条例》"
LEAVE_REGULATION = "《职工带薪年休假条例》"
# 劳社部发〔2008〕3号: 月计薪天数 = (365 - 104) / 12 = 21.75
WAGE_DAYS_NOTICE = "《关于职工全年月平均工作时间和工资折算问题的通知》（劳社部发〔2008〕3号）"
WAGE_DAYS = Decimal("21.75")


def money(value: Decimal) -> int | float:
    """Rounded to the fen; an int when whole so the model reads 28000, not 28000.0."""
    rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


def yuan(value: Decimal | float | int) -> str:
    return f"{money(Decimal(str(value)))}元"


def number(value: Decimal) -> str:
    return format(value.normalize(), "f")


def duration(years: int | None, months: int | None, start_date: date | None, end_date: date | None,
             what: str) -> tuple[Span, str]:
    """A length given either as years + months or as first and last day (both included)."""
    if start_date or end_date:
        if years is not None or months is not None:
            raise ToolError(f"{what}：请只用一种方式给出期限，years/months 或 start_date/end_date，不要同时给")
        if not (start_date and end_date):
            raise ToolError(f"{what}：start_date 和 end_date 需要同时给出（YYYY-MM-DD）")
        if end_date < start_date:
            raise ToolError(f"{what}：end_date {end_date} 早于 start_date {start_date}")
        span = service_length(start_date, end_date)
        return span, f"{start_date.isoformat()}至{end_date.isoformat()}（首尾两日都算）共{span.describe()}"
    if years is None and months is None:
        raise ToolError(f"{what}：缺少期限，请给出 years 和/或 months，或者 start_date 和 end_date")
    # years read from 3年5个月 / 41个月 / 三年半 carry their months (lawtune.tools.figures.read_years)
    year_months = round(Decimal(str(years or 0)) * 12)
    if months is not None and year_months % 12:
        raise ToolError(f"{what}：years={years:g} 已含{year_months % 12}个月（如 3年5个月），不要再另给 months")
    total = year_months + (months or 0)
    span = Span(total // 12, total % 12, 0)
    return span, span.describe()


# -- 经济补偿 / 违法解除赔偿金 -------------------------------------------------------------------------------------
# 违法解除 as the statute (第四十八、八十七条) and people say it: 违法/非法 with 解除/辞退/开除/解雇/终止, 无故 (没有
# 理由) dismissals, 违法裁员. Said, the call must carry unlawful (the tuned model left it out: half the figure);
# asked about (算不算违法解除？) or denied (不是违法辞退) it is not said (lawtune.tools.constrain.said_in)
UNLAWFUL_SAID = tuple(f"{how}…{what}" for how in ("违法", "非法", "无故", "无理由", "没有理由", "无正当理由")
                      for what in ("解除", "辞退", "开除", "解雇", "终止", "炒")) + ("违法裁员", "非法裁员")


@needs_one_of(("years",), ("months",), ("start_date", "end_date"))
@required_when_said(unlawful=UNLAWFUL_SAID)
@labels(start_date="入职日", end_date="最后工作日", unlawful="违法解除、违法辞退时 true")
def severance_pay(
    monthly_wage: Annotated[Amount, Field(gt=0, description="解除或终止前十二个月的平均月工资（元）")],
    years: Annotated[OptionalYears, Field(ge=0, description="在本单位工作的整年数")] = None,
    months: Annotated[OptionalMonths, Field(ge=0, description="整年之外的月数")] = None,
    start_date: Annotated[Day | None, Field(description="入职日期 YYYY-MM-DD（代替 years/months）")] = None,
    end_date: Annotated[Day | None, Field(description="最后工作日 YYYY-MM-DD（与 start_date 一起给）")] = None,
    local_average_wage: Annotated[OptionalAmount, Field(gt=0,
                                                      description="当地上年度职工月平均工资（元），用于三倍封顶")] = None,
    local_minimum_wage: Annotated[OptionalAmount, Field(gt=0,
                                                      description="当地最低工资标准（元/月）")] = None,
    unlawful: Annotated[bool, Field(description="违法解除或终止时为 true：赔偿金为经济补偿的二倍")] = False,
) -> dict[str, Any]:
    """解除或终止劳动合同的经济补偿，违法解除的赔偿金（劳动合同法第四十七、八十七条）。

    违法解除或终止时赔偿金为经济补偿的二倍（第八十七条）。The first paragraph is the description the model reads:
    short, since every offered tool costs prompt tokens (docs/tools.md "Prompt cost")."""
    span, service = duration(years, months, start_date, end_date, "工作年限")
    wage = Decimal(str(monthly_wage))
    steps = [f"工作年限{service}"]
    articles = [f"{CONTRACT_LAW}第四十七条"]

    pay_months = Decimal(span.years)
    steps.append(f"每满一年支付一个月工资：满{span.years}年计{span.years}个月")
    rest = Span(0, span.months, span.days)
    if span.months >= 6:
        pay_months += 1
        steps.append(f"剩余{rest.describe()}，六个月以上不满一年的按一年计算，计1个月")
    elif span.months or span.days:
        pay_months += Decimal("0.5")
        steps.append(f"剩余{rest.describe()}，不满六个月的支付半个月工资，计0.5个月")

    base = wage
    if local_minimum_wage is not None and wage < Decimal(str(local_minimum_wage)):
        base = Decimal(str(local_minimum_wage))
        steps.append(f"月平均工资{yuan(wage)}低于当地最低工资标准，按{yuan(base)}计算")
        articles.append(f"{CONTRACT_REGULATION}第二十七条")
    capped = False
    if local_average_wage is not None:
        cap = Decimal(str(local_average_wage)) * 3
        if wage > cap:
            capped = True
            base = cap
            steps.append(f"月工资{yuan(wage)}高于当地上年度职工月平均工资三倍{yuan(cap)}，按{yuan(cap)}计算，"
                         "年限最高不超过十二年")
            if pay_months > 12:
                steps.append(f"{number(pay_months)}个月超过十二年上限，按12个月计算")
                pay_months = Decimal(12)
        else:
            steps.append(f"月工资未高于当地上年度职工月平均工资三倍{yuan(cap)}，不封顶")
    else:
        steps.append("未提供当地上年度职工月平均工资，未检查三倍封顶")

    amount = base * pay_months
    steps.append(f"经济补偿 = {number(pay_months)}个月 × {yuan(base)} = {yuan(amount)}")
    kind = "经济补偿"
    if unlawful:
        amount *= 2
        kind = "违法解除赔偿金"
        steps.append(f"违法解除或终止，赔偿金为经济补偿标准的二倍：{yuan(amount)}")
        articles.append(f"{CONTRACT_LAW}第八十七条")
    if start_date and start_date < date(2008, 1, 1):
        steps.append("注意：2008年1月1日前的工作年限按当时有关规定计算经济补偿，本结果按同一标准合计，需另行核对")
        articles.append(f"{CONTRACT_LAW}第九十七条")
    return {
        "result": money(amount), "unit": "元",
        "details": {"kind": kind, "service": span.describe(), "months_of_pay": float(pay_months),
                    "monthly_base": money(base), "capped": capped},
        "formula": "；".join(steps) + "。",
        "articles": articles,
    }


# -- 未签书面劳动合同的二倍工资 --------------------------------------------------------------------------------------
# which date is which, in people's words: 入职 / 开始上班 (用工之日), 补签 (the contract signed late), 最后一天 / 离职
# (the relationship ended unsigned); a date in a clause naming one is that parameter's (the tuned model wrote a 补签
# date as end_date)
@needs_one_of(("months_without_contract",), ("start_date", "contract_date"), ("start_date", "end_date"))
# only on a question that speaks of a contract at all: the tuned model called it for a 违法辞退 question (s34)
@said_about("合同")
@required_when_said(start_date=("入职", "开始上班", "开始工作", "用工", "上岗", "到岗", "进公司", "进的公司", "进单位"),
                    contract_date=("补签", "补订", "签了合同", "签了劳动合同", "签的合同", "才签", "签订书面"),
                    end_date=("最后一天", "最后工作日", "离职", "辞职", "离开公司", "劳动关系结束", "走人"))
@labels(start_date="入职日", contract_date="补签合同日", end_date="离职日")
def double_wage_no_contract(
    monthly_wage: Annotated[Amount, Field(gt=0, description="月工资（元）")],
    months_without_contract: Annotated[OptionalMonths, Field(ge=0, description=(
        "自用工之日起未签书面劳动合同的整月数（含第一个月）"))] = None,
    start_date: Annotated[Day | None, Field(description="用工之日 YYYY-MM-DD（代替 months_without_contract）")] = None,
    contract_date: Annotated[Day | None, Field(description="补签书面劳动合同的日期 YYYY-MM-DD")] = None,
    end_date: Annotated[Day | None, Field(description="未签合同而劳动关系结束时的最后工作日 YYYY-MM-DD")] = None,
) -> dict[str, Any]:
    """未签书面劳动合同的二倍工资差额（劳动合同法第八十二条）。

    满一个月的次日起，最多十一个月。"""
    wage = Decimal(str(monthly_wage))
    articles = [f"{CONTRACT_LAW}第八十二条", f"{CONTRACT_REGULATION}第六条", f"{CONTRACT_REGULATION}第七条"]
    if start_date is None:
        if months_without_contract is None:
            raise ToolError("缺少期限：请给出 months_without_contract，或者 start_date 加 contract_date/end_date")
        if contract_date or end_date:
            raise ToolError("contract_date/end_date 需要和 start_date 一起给出")
        counted = Decimal(min(max(months_without_contract - 1, 0), 11))
        steps = [f"未签书面合同{months_without_contract}个月，第一个月不计，自第二个月起计{number(counted)}个月"
                 + ("（最多十一个月）" if months_without_contract > 12 else "")]
        over_a_year = months_without_contract >= 12
    else:
        if months_without_contract is not None:
            raise ToolError("请只用一种方式给出期限：months_without_contract 或 start_date，不要同时给")
        if contract_date is None and end_date is None:
            raise ToolError("给了 start_date 时还需要 contract_date（补签日）或 end_date（劳动关系结束的最后工作日）")
        stops = [day for day in (contract_date, end_date + timedelta(days=1) if end_date else None) if day]
        stop = min(stops)
        if stop < start_date:
            raise ToolError(f"contract_date/end_date 早于用工之日 {start_date}")
        # 实施条例第六、七条: 用工满一个月的次日起至补订前一日，至多到满一年的前一日 (实践中按十一个月计)
        first = add_months(start_date, 1)
        last_exclusive = min(stop, add_months(start_date, 12))
        over_a_year = stop >= add_months(start_date, 12)
        if last_exclusive <= first:
            counted = Decimal(0)
            steps = [f"用工之日{start_date.isoformat()}起一个月内已补签或劳动关系已结束，不支付二倍工资"]
        else:
            months, days, month_length = months_and_days(first, last_exclusive)
            counted = Decimal(months) + (Decimal(days) / Decimal(month_length) if days else Decimal(0))
            last_day = last_exclusive - timedelta(days=1)
            tail = f"{months}个月" + (f"{days}天（不足一月的按{days}/{month_length}个月折算）" if days else "")
            steps = [f"二倍工资自用工满一个月的次日{first.isoformat()}起算，至{last_day.isoformat()}止，共{tail}"]
    if over_a_year:
        steps.append("用工满一年仍未签书面合同的，二倍工资至满一年的前一日为止（最多十一个月），"
                     "并视为已订立无固定期限劳动合同")
        articles.append(f"{CONTRACT_LAW}第十四条")
    amount = wage * counted
    steps.append(f"每月二倍工资中已发一倍，另付一倍：{number(counted.quantize(Decimal('0.0001')))}个月 × {yuan(wage)}"
                 f" = {yuan(amount)}")
    return {
        "result": money(amount), "unit": "元",
        "details": {"months": float(counted.quantize(Decimal("0.0001"))), "monthly_wage": money(wage)},
        "formula": "；".join(steps) + "。",
        "articles": articles,
    }


# -- 加班费 -------------------------------------------------------------------------------------------------------
# the three kinds of overtime as 劳动法第四十四条 and people name them: hours in a clause that names a kind go to that
# kind (平时下班后加班12小时 → weekday_hours "12小时"), and the call must give them (the tuned model put 平时 hours
# under rest_day_hours). 节假日 is a holiday; 晚上 names no kind (周六晚上 is a rest day)
# 平时 / 工作日 with hours may be the normal working day (平时每天工作8小时): they name overtime only with 加班
WEEKDAY_SAID = ("下班后", "下班以后", "延时", "延长工作时间", "加点", "平时…加班", "平日…加班", "工作日…加班",
                "周一到周五…加班", "周一至周五…加班")
REST_DAY_SAID = ("休息日", "周末", "周六", "周日", "星期六", "星期天", "星期日", "礼拜六", "礼拜天", "礼拜日", "双休日",
                 "公休日")
HOLIDAY_SAID = ("法定节假日", "法定假日", "法定休假日", "节假日", "国庆", "春节", "元旦", "清明", "五一", "劳动节",
                "端午", "中秋", "过年", "大年初")


@needs_one_of(("weekday_hours",), ("rest_day_hours",), ("holiday_hours",))
@required_when_said(weekday_hours=WEEKDAY_SAID, rest_day_hours=REST_DAY_SAID, holiday_hours=HOLIDAY_SAID)
@labels(weekday_hours="工作日、平时延时", rest_day_hours="休息日、周末", holiday_hours="法定节假日")
def overtime_pay(
    monthly_wage: Annotated[Amount, Field(gt=0, description="加班费计算基数：正常工作时间月工资（元）")],
    weekday_hours: Annotated[Hours, Field(ge=0, description="工作日延长工作时间的小时数（150%）")] = 0,
    rest_day_hours: Annotated[Hours, Field(ge=0, description="休息日工作且未安排补休的小时数（200%）")] = 0,
    holiday_hours: Annotated[Hours, Field(ge=0, description="法定休假日工作的小时数（300%）")] = 0,
) -> dict[str, Any]:
    """加班费（劳动法第四十四条）。

    工作日延时150%、休息日200%、法定休假日300%；日工资=月工资÷21.75，小时工资=日工资÷8。"""
    if not (weekday_hours or rest_day_hours or holiday_hours):
        raise ToolError("没有加班小时数：请给出 weekday_hours、rest_day_hours 或 holiday_hours 中至少一项")
    wage = Decimal(str(monthly_wage))
    hourly = wage / WAGE_DAYS / 8
    steps = [f"日工资 = {yuan(wage)} ÷ 21.75 = {yuan(wage / WAGE_DAYS)}，小时工资 = 日工资 ÷ 8 = {yuan(hourly)}"]
    parts: dict[str, int | float] = {}
    total = Decimal(0)
    for key, hours, rate, label in (("weekday", weekday_hours, Decimal("1.5"), "工作日延长工作时间"),
                                    ("rest_day", rest_day_hours, Decimal("2"), "休息日工作且未补休"),
                                    ("holiday", holiday_hours, Decimal("3"), "法定休假日工作")):
        if not hours:
            continue
        amount = hourly * Decimal(str(hours)) * rate
        total += amount
        parts[key] = money(amount)
        steps.append(f"{label}{number(Decimal(str(hours)))}小时 × {yuan(hourly)} × {int(rate * 100)}% = {yuan(amount)}")
    steps.append(f"合计{yuan(total)}（法律规定的是不低于上述标准）")
    if rest_day_hours:
        steps.append("休息日工作已安排补休的，不再支付200%的加班费")
    return {
        "result": money(total), "unit": "元",
        "details": {"hourly_wage": money(hourly), **parts},
        "formula": "；".join(steps) + "。",
        "articles": ["《劳动法》第四十四条", WAGE_DAYS_NOTICE],
    }


# -- 试用期 -------------------------------------------------------------------------------------------------------
OPEN_ENDED_SAID = ("无固定期限",)
TASK_BASED_SAID = ("以完成一定工作任务为期限", "完成一定工作任务")


# a length, dates, or one of the two contract kinds without a length, named as the statute names them (劳动合同法第十二条:
# 无固定期限 / 以完成一定工作任务为期限): the boolean-only call (`{"task_based": true}`) was the tuned model's call on
# questions of every kind (docs/tools.md "Measured"); a question that says neither is answered or asked back
# and only on a question that speaks of a probation period at all: the tuned model called it with the dates of a
# double-wage question (入职 … 补签, no 试用期 in sight)
@needs_one_of(("contract_years",), ("contract_months",), ("start_date", "end_date"), ("open_ended",), ("task_based",))
@said_about("试用")
# the agreed wage and the local minimum in people's words: an amount in a clause naming one is that parameter's, and
# given (the tuned model left the agreed wage out and returned no wage floor); the contract kinds, given when said
# (it left open_ended out for 签的是无固定期限劳动合同, s34)
@required_when_said(agreed_wage=("约定", "月薪", "月工资", "工资是", "工资为", "工资每月", "每月工资", "每个月工资"),
                    local_minimum_wage=("最低工资",), open_ended=OPEN_ENDED_SAID, task_based=TASK_BASED_SAID)
@said_as(open_ended=OPEN_ENDED_SAID, task_based=TASK_BASED_SAID)
@labels(start_date="合同起始日", end_date="合同终止日", open_ended="无固定期限时 true",
        task_based="以完成一定工作任务为期限时 true")
def probation_limits(
    contract_years: Annotated[OptionalYears, Field(ge=0, description="劳动合同期限的整年数")] = None,
    contract_months: Annotated[OptionalMonths, Field(ge=0, description="劳动合同期限整年之外的月数")] = None,
    start_date: Annotated[Day | None, Field(description="合同起始日 YYYY-MM-DD（代替 contract_years/months）")] = None,
    end_date: Annotated[Day | None, Field(description="合同终止日 YYYY-MM-DD（与 start_date 一起给）")] = None,
    open_ended: Annotated[bool, Field(description="无固定期限劳动合同为 true")] = False,
    task_based: Annotated[bool, Field(description="以完成一定工作任务为期限的合同为 true")] = False,
    agreed_wage: Annotated[OptionalAmount, Field(gt=0, description="劳动合同约定的月工资（元）")] = None,
    local_minimum_wage: Annotated[OptionalAmount, Field(gt=0,
                                                      description="用人单位所在地最低工资标准（元/月）")] = None,
) -> dict[str, Any]:
    """试用期最长多久、试用期工资最低多少（劳动合同法第十九、二十条）。"""
    articles = [f"{CONTRACT_LAW}第十九条"]
    if open_ended and task_based:
        raise ToolError("open_ended 和 task_based 不能同时为 true")
    if open_ended or task_based:
        if any(value is not None for value in (contract_years, contract_months, start_date, end_date)):
            raise ToolError("无固定期限或以完成一定工作任务为期限的合同不需要再给合同期限")
        limit = 6 if open_ended else 0
        steps = ["无固定期限劳动合同，试用期不得超过六个月" if open_ended
                 else "以完成一定工作任务为期限的劳动合同不得约定试用期"]
    else:
        span, described = duration(contract_years, contract_months, start_date, end_date, "劳动合同期限")
        months = span.total_months
        if months < 3:
            limit, rule = 0, "不满三个月的，不得约定试用期"
        elif months < 12:
            limit, rule = 1, "三个月以上不满一年的，试用期不得超过一个月"
        elif months < 36:
            limit, rule = 2, "一年以上不满三年的，试用期不得超过二个月"
        else:
            limit, rule = 6, "三年以上固定期限的，试用期不得超过六个月"
        steps = [f"劳动合同期限{described}，{rule}"]
    steps.append("同一用人单位与同一劳动者只能约定一次试用期")
    floor = None
    if agreed_wage is not None or local_minimum_wage is not None:
        articles += [f"{CONTRACT_LAW}第二十条", f"{CONTRACT_REGULATION}第十五条"]
        candidates = []
        if agreed_wage is not None:
            eighty = Decimal(str(agreed_wage)) * Decimal("0.8")
            candidates.append(eighty)
            steps.append(f"试用期工资不得低于约定工资的80%：{yuan(agreed_wage)} × 80% = {yuan(eighty)}"
                         "（或本单位相同岗位最低档工资的80%）")
        if local_minimum_wage is not None:
            candidates.append(Decimal(str(local_minimum_wage)))
            steps.append(f"并不得低于当地最低工资标准{yuan(local_minimum_wage)}")
        floor = max(candidates)
        steps.append(f"试用期月工资下限为{yuan(floor)}")
    return {
        "result": {"max_probation_months": limit, "min_probation_wage": money(floor) if floor is not None else None},
        "unit": "月；元",
        "formula": "；".join(steps) + "。",
        "articles": articles,
    }


# -- 带薪年休假 ---------------------------------------------------------------------------------------------------
@needs_one_of(("cumulative_work_years",), ("first_work_date",))
# only on a question about leave: the tuned model called it with the 21年 of a question about an old loan (s34)
@said_about("年假", "年休", "休假", "带薪假")
@labels(first_work_date="参加工作日")
def annual_leave_days(
    cumulative_work_years: Annotated[OptionalYears, Field(ge=0, description="累计工作年限（年，含在其他单位）")] = None,
    first_work_date: Annotated[Day | None, Field(description="参加工作的日期 YYYY-MM-DD（代替 cumulative_work_years）")] = None,
    as_of: Annotated[Day | None, Field(description="计算到哪一天 YYYY-MM-DD，默认今天")] = None,
) -> dict[str, Any]:
    """带薪年休假天数（职工带薪年休假条例第三条）。

    满1年不满10年5天，满10年不满20年10天，满20年15天。"""
    if (cumulative_work_years is None) == (first_work_date is None):
        raise ToolError("请给出 cumulative_work_years 或 first_work_date 其中之一")
    if first_work_date is not None:
        today = as_of or date.today()
        if today < first_work_date:
            raise ToolError(f"first_work_date {first_work_date} 晚于计算日 {today}")
        months, _, _ = months_and_days(first_work_date, today)
        years = Decimal(months // 12)
        described = f"{first_work_date.isoformat()}参加工作，到{today.isoformat()}累计工作满{months // 12}年"
    else:
        if as_of is not None:
            raise ToolError("as_of 只和 first_work_date 一起使用")
        months = round(Decimal(str(cumulative_work_years)) * 12)  # 7年5个月 arrives as 7 5/12 years
        years = Decimal(months) / 12
        described = f"累计工作{months // 12}年" + (f"{months % 12}个月" if months % 12 else "")
    if years < 1:
        days, rule = 0, "累计工作不满1年，不享受年休假"
    elif years < 10:
        days, rule = 5, "已满1年不满10年的，年休假5天"
    elif years < 20:
        days, rule = 10, "已满10年不满20年的，年休假10天"
    else:
        days, rule = 15, "已满20年的，年休假15天"
    steps = [described, rule, "国家法定休假日、休息日不计入年休假的假期",
             "有第四条情形（如请病假累计较长、寒暑假多于年休假）的不享受当年年休假；新入职当年按剩余日历天数折算"]
    return {
        "result": days, "unit": "天",
        "formula": "；".join(steps) + "。",
        "articles": [f"{LEAVE_REGULATION}第三条", f"{LEAVE_REGULATION}第四条"],
    }
