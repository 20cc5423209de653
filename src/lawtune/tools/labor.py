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

from lawtune.tools.periods import Span, months_and_days, service_length
from lawtune.tools.tool import ToolError

CONTRACT_LAW = "《劳动合同法》"
CONTRACT_REGULATION = "《劳动合同法实施条例》"
LEAVE_REGULATION = "《职工带薪年休假条例》"
# 劳社部发〔2008〕3号: 月计薪天数 = (365 - 104) / 12 = 21.75
WAGE_DAYS_NOTICE = "《关于职工全年月平均工作时间和工资折算问题的通知》（劳社部发〔2008〕3号）"
WAGE_DAYS = Decimal("21.75")

Wage = Annotated[float, Field(gt=0, le=10_000_000, description="月工资（元）")]
OptionalWage = Annotated[float | None, Field(default=None, gt=0, le=10_000_000)]
Years = Annotated[int | None, Field(default=None, ge=0, le=80, description="整年数")]
Months = Annotated[int | None, Field(default=None, ge=0, le=960, description="另加的月数（可超过12）")]


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
    total = (years or 0) * 12 + (months or 0)
    span = Span(total // 12, total % 12, 0)
    return span, span.describe()


# -- 经济补偿 / 违法解除赔偿金 -------------------------------------------------------------------------------------
def severance_pay(
    monthly_wage: Annotated[float, Field(gt=0, le=10_000_000, description="解除或终止前十二个月的平均月工资（元）")],
    years: Annotated[int | None, Field(ge=0, le=80, description="在本单位工作的整年数")] = None,
    months: Annotated[int | None, Field(ge=0, le=960, description="整年之外的月数")] = None,
    start_date: Annotated[date | None, Field(description="入职日期 YYYY-MM-DD（代替 years/months）")] = None,
    end_date: Annotated[date | None, Field(description="最后工作日 YYYY-MM-DD（与 start_date 一起给）")] = None,
    local_average_wage: Annotated[float | None, Field(gt=0, le=10_000_000,
                                                      description="当地上年度职工月平均工资（元），用于三倍封顶")] = None,
    local_minimum_wage: Annotated[float | None, Field(gt=0, le=10_000_000,
                                                      description="当地最低工资标准（元/月）")] = None,
    unlawful: Annotated[bool, Field(description="违法解除或终止时为 true：赔偿金为经济补偿的二倍")] = False,
) -> dict[str, Any]:
    """计算解除或终止劳动合同的经济补偿（劳动合同法第四十七条），违法解除时计算二倍赔偿金（第八十七条）。"""
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
