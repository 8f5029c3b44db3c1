"""The validation report a person reads: HTML in Chinese with an English switch, and JSON.

One table row per line of :class:`relay.dossier.verify.Report`: what, who signed, when
(claimed; proven by which timestamp over which checkpoint), on which chain, the
revocation status at that time, and the verdict. The page is self-contained (no
script, no outside resources) so it can be archived next to the dossier.
"""

from __future__ import annotations

import html
import json
from datetime import datetime

from relay.dossier.verify import Line, Report, Revocation

__all__ = ["render_html", "render_json"]

_KIND = {
    "manifest": ("清单签名", "Manifest signature"),
    "packet": ("办件包", "Case packet"),
    "receipt": ("回执", "Receipt"),
    "licence": ("电子证照", "E-licence"),
    "agreement": ("协议签署", "Agreement signature"),
    "timestamp": ("可信时间戳", "Trusted timestamp"),
    "member": ("文件", "File"),
}
_REVOCATION = {
    Revocation.GOOD: ("签署时有效", "good at signing time"),
    Revocation.REVOKED: ("签署前已吊销", "revoked before signing"),
    Revocation.INDETERMINATE: ("无法确定", "indeterminate"),
    Revocation.UNKNOWN: ("无吊销数据", "no revocation data"),
}


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n"


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _both(zh: str, en: str) -> str:
    return f'<span lang="zh">{html.escape(zh)}</span><span lang="en">{html.escape(en)}</span>'


def _row(line: Line) -> str:
    kind = _KIND.get(line.kind, (line.kind, line.kind))
    status = _REVOCATION.get(line.revocation) if line.revocation is not None else None
    verdict = _both("通过", "valid") if line.ok else _both("不通过", "INVALID")
    revocation = "—" if status is None else _both(*status)
    detail = html.escape(line.revocation_detail)
    problem = html.escape(line.problem)
    return (
        f'<tr class="{"ok" if line.ok else "bad"}"><td>{_both(*kind)}</td>'
        f"<td><code>{html.escape(line.subject)}</code></td><td>{html.escape(line.signer)}</td>"
        f"<td>{_when(line.claimed)}</td>"
        f"<td>{_when(line.proven)}<br><small>{html.escape(line.proven_by)}</small></td>"
        f"<td><small>{html.escape(line.chain)}</small></td>"
        f"<td>{revocation}<br><small>{detail}</small></td>"
        f"<td>{verdict}<br><small>{problem}</small></td></tr>"
    )


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
