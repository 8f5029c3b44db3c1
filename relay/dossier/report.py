"""The validation report a person reads: HTML in Chinese with an English switch, and JSON.

One table row per line of :class:`relay.dossier.verify.Report`: what, who signed, when
(claimed; proven by which timestamp over which checkpoint), on which chain, the
revocation status at that time, and the verdict. The page is self-contained (no
script, no outside resources) so it can be archived next to the dossier.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta, timezone

from relay.dossier.verify import Line, Report, Revocation

__all__ = ["render_html", "render_json"]

_KIND = {
    "manifest": ("清单签名", "Manifest signature"),
    "case": ("办件归属", "Case of the dossier"),
    "packet": ("办件包", "Case packet"),
    "receipt": ("回执", "Receipt"),
    "licence": ("电子证照", "E-licence"),
    "agreement": ("协议签署", "Agreement signature"),
    "agreement-version": ("生效协议版本", "Agreement version in force"),
    "timestamp": ("可信时间戳", "Trusted timestamp"),
    "member": ("文件", "File"),
    "survey": ("远程勘查报告", "Remote survey report"),
}
_REVOCATION = {
    Revocation.GOOD: ("签署时有效", "good at signing time"),
    Revocation.REVOKED: ("签署前已吊销", "revoked before signing"),
    Revocation.INDETERMINATE: ("无法确定", "indeterminate"),
    Revocation.UNKNOWN: ("无吊销数据", "no revocation data"),
}
_PROBLEM_ZH = {
    "member-missing": "清单列出的文件缺失",
    "member-changed": "文件已被改动（摘要与清单不符）",
    "member-unlisted": "文件不在已签名的清单中",
    "manifest": "清单格式错误",
    "signature": "签名验证失败",
    "proof": "审计日志证明验证失败",
    "timestamp": "时间戳验证失败",
    "backdated": "时间戳早于签名声称的时间",
    "late": "时间晚于验证时间",
    "wrong-party": "签署方与协议当事方不符",
    "wrong-node": "清单签署方不是清单所称的导出单位",
    "wrong-case": "案件文件或办件包不属于清单所称的案件",
    "agreement-missing": "卷宗中没有办件包所依据的协议版本",
    "revocation-revoked": "证书在签署前已被吊销",
    "revocation-indeterminate": "证书已被吊销，无法证明签署早于吊销",
    "revocation-unknown": "没有签署时的吊销数据",
    "survey-report": "勘查报告格式错误",
    "survey-case": "勘查报告与本案不符",
    "survey-evidence": "勘查证据链与报告不符",
    "survey-media": "勘查影像资料与报告不符（已被改动）",
}


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n"


_BEIJING = timezone(timedelta(hours=8), "CST")


def _when(moment: datetime | None) -> str:
    """A time as each view reads it: Beijing time in Chinese, UTC in English."""
    if moment is None:
        return "—"
    return _both(
        moment.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S（北京时间）"),
        moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def _both(zh: str, en: str) -> str:
    return f'<span lang="zh">{html.escape(zh)}</span><span lang="en">{html.escape(en)}</span>'


def _row(line: Line) -> str:
    kind = _KIND.get(line.kind, (line.kind, line.kind))
    status = _REVOCATION.get(line.revocation) if line.revocation is not None else None
    verdict = _both("通过", "valid") if line.ok else _both("不通过", "INVALID")
    revocation = "—" if status is None else _both(*status)
    if line.revoked_at is not None:
        revocation += (
            "<br><small>"
            + _both("吊销时间 ", "")
            + _when(line.revoked_at)
            + _both("", f" ({line.revocation_detail})")
            + "</small>"
        )
    problem = ""
    if line.code:
        problem = _both(_PROBLEM_ZH.get(line.code, "验证未通过"), line.problem)
    elif line.detail:
        problem = _both(_detail_zh(line.detail), line.detail)
    return (
        f'<tr class="{"ok" if line.ok else "bad"}"><td>{_both(*kind)}</td>'
        f"<td><code>{html.escape(line.subject)}</code></td><td>{html.escape(line.signer)}</td>"
        f"<td>{_when(line.claimed)}</td>"
        f"<td>{_when(line.proven)}<br><small>{_proven_by(line)}</small></td>"
        f"<td><small>{html.escape(line.chain)}</small></td>"
        f"<td>{revocation}</td>"
        f"<td>{verdict}<br><small>{problem}</small></td></tr>"
    )


def _detail_zh(detail: str) -> str:
    """The Chinese sentence of a passing survey line: it names the media only when the
    dossier carries them (the English detail counts them: "N of M media files")."""
    found = re.search(r"(\d+) of (\d+) media files", detail)
    if found is None or found.group(1) == "0":
        return "证据链与报告一致（本卷未附影像资料）"
    present, named = found.groups()
    return f"证据链与报告一致，所附影像资料 {present}/{named} 个与报告一致"


_BY_CHECKPOINT = re.compile(
    r"timestamp (\d+) \((.*?)\) over checkpoint (\d+) of (\S+), leaf (\d+)"
    r"(?:, cosigned by (.*))?"
)
_BY_LEAF = re.compile(r"timestamp (\d+) \((.*?)\) over leaf (\d+) itself")
_TOKEN = re.compile(r"RFC 3161 token (\d+) over (\S+)")


def _proven_by_zh(text: str) -> str:
    """What proved the time, in Chinese: which timestamp over which checkpoint (or leaf)
    and who cosigned it (dossier.md §5 asks for it in the report)."""
    if found := _BY_LEAF.match(text):
        serial, tsa, leaf = found.groups()
        return f"可信时间戳（序号 {serial}，{tsa}）直接覆盖审计日志第 {int(leaf) + 1} 条记录"
    if found := _BY_CHECKPOINT.match(text):
        serial, tsa, size, origin, leaf, cosigned = found.groups()
        zh = (
            f"可信时间戳（序号 {serial}，{tsa}）覆盖审计日志 {origin} 的检查点"
            f"（共 {size} 条记录，本项为第 {int(leaf) + 1} 条）"
        )
        return zh + (f"，并经 {cosigned} 见证" if cosigned else "")
    if found := _TOKEN.match(text):
        return f"可信时间戳（序号 {found.group(1)}）覆盖 {found.group(2)}"
    return "由可信时间戳（覆盖审计日志检查点）证明"


def _proven_by(line: Line) -> str:
    if line.proven is not None:
        return _both(_proven_by_zh(line.proven_by), line.proven_by)
    if line.claimed is None:
        return ""
    return _both("仅有签署方自述时间", line.proven_by)


_STYLE = """
body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #999;padding:.3em;vertical-align:top;text-align:left}
tr.bad{background:#fdd}tr.ok{background:#efe}small{color:#333}
#en:target~main [lang=zh],main [lang=en]{display:none}
#en:target~main [lang=en]{display:inline}
"""


def render_html(report: Report) -> str:
    verdict = (
        _both("卷宗验证通过", "The dossier is valid")
        if report.ok
        else _both("卷宗验证不通过", "The dossier is NOT valid")
    )
    heads = [
        ("类别", "Kind"),
        ("对象", "Item"),
        ("签署方", "Signed by"),
        ("声称时间", "Claimed time"),
        ("证明时间", "Proven no later than"),
        ("证书链", "Certificate chain"),
        ("吊销状态", "Revocation status"),
        ("结论", "Verdict"),
    ]
    rows = "\n".join(_row(line) for line in report.lines)
    return f"""<!DOCTYPE html>
<html lang="zh"><head><meta charset="utf-8"><title>卷宗验证报告 Dossier validation report</title>
<style>{_STYLE}</style></head><body>
<a id="en"></a>
<main>
<p><a href="#en" lang="zh">English</a><a href="#" lang="en">中文</a></p>
<h1>{_both("卷宗验证报告", "Dossier validation report")}</h1>
<p>{_both("办件", "Case")}: <code>{html.escape(report.case)}</code> ·
{_both("导出节点", "Exported by node")}: {html.escape(report.node)} ·
{_both("验证时间", "Verified as of")}: {_when(report.at)}</p>
<h2>{verdict}</h2>
<table><thead><tr>{"".join(f"<th>{_both(*h)}</th>" for h in heads)}</tr></thead>
<tbody>
{rows}
</tbody></table>
</main></body></html>
"""
