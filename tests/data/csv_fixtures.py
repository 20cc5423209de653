"""Tricky CSV text shared by the data tests; each row's line number and fate is noted beside it.

Written to disk by the tests in several encodings (utf-8, utf-8 with BOM, gb18030).
"""

HEADER = "title,question,reply,is_best\n"

TRICKY_ROWS = [
    # line 2: kept; the best answer of a title that has two
    '劳动合同到期不续签有补偿吗,,"有。依据《劳动合同法》第四十六条，用人单位不续签的，应当支付经济补偿。",1\n',
    # line 3: same title, is_best=0 (kept by --is-best all, dropped by best / best-per-title)
    "劳动合同到期不续签有补偿吗,,不一定，要看是谁提出不续签。,0\n",
    # lines 4-5: HTML and entities in the title, a body, an answer with an embedded newline
    '"<p>工伤认定&nbsp;需要多久？</p>",单位不给认定怎么办,"工伤认定申请受理后六十日内作出决定。\n单位不配合的，可以自行申请。",1\n',
    # line 6: doubled quotes inside a quoted field
    '"他说""欠条""有效吗",,"欠条写明借款人、金额、日期并签名，一般有效。",1\n',
    # line 7: missing reply -> missing_answer
    "没有答案的问题,,,0\n",
    # line 8: no title and no body -> missing_question
    ',,"只有答案没有问题的行，这一行应当被丢弃。",1\n',
    # line 9: exact duplicate of line 2 -> duplicate
    '劳动合同到期不续签有补偿吗,,"有。依据《劳动合同法》第四十六条，用人单位不续签的，应当支付经济补偿。",1\n',
    # line 10: three fields instead of four -> bad_columns
    "列数不对的行,只有三列,1\n",
    # line 11: text after a closing quote -> bad_quoting
    '"引号"后面还有字,,答案,1\n',
    # line 12: zero-width space and an ideographic space run in the title
    "离婚\u200b冷静期\u3000\u3000是多久,,三十日内任何一方不愿意离婚的，可以撤回离婚登记申请。,1\n",
    # line 13: same as line 12 once normalized -> duplicate
    "离婚冷静期是多久,,三十日内任何一方不愿意离婚的，可以撤回离婚登记申请。,1\n",
    # line 14: the body copies the title -> user text is the title alone
    "房东不退押金怎么办,房东不退押金怎么办？,可以先协商，协商不成可以向法院起诉。,1\n",
    # line 15: the body repeats the title and adds detail -> user text is the body
    "公司欠薪,公司欠薪三个月了怎么办,可以向劳动监察大队投诉或申请劳动仲裁。,1\n",
    # line 16: a title whose only answer is not best (best-per-title keeps it; best drops it)
    "交通事故对方全责不赔怎么办,,可以向法院起诉，要求对方及其保险公司赔偿。,0\n",
    # line 17: blank line (not a record)
    "\n",
    # line 18: an unterminated quote at the end of the file -> bad_quoting
    '"没有结束的引号,,答案,1\n',
]

TRICKY_CSV = HEADER + "".join(TRICKY_ROWS)

# What `lawtune prepare` must report for TRICKY_CSV with the default policy.
EXPECTED_DROPS = {
    "bad_columns": [10],
    "bad_quoting": [11, 18],
    "missing_question": [8],
    "missing_answer": [7],
    "duplicate": [9, 13],
}
EXPECTED_READ = 15  # records: lines 2-16 (4-5 is one record) and 18; the blank line 17 is not one
EXPECTED_KEPT = 8
