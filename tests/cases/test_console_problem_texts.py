"""The console's Chinese page says why a step was refused and what to do next: every
reason the agreement decision can give a 403 ``not-authorized`` has its own sentence
(otherwise the page fell back to the status text, "your role may not do this", which
is wrong for an agreement that excludes a partner's cryptographic profile)."""

from __future__ import annotations

import re
from pathlib import Path

from agreements.authorize import Reason

I18N = Path(__file__).parents[2] / "relay" / "http" / "static" / "console" / "i18n.js"


def _problems_zh() -> dict[str, str]:
    text = I18N.read_text(encoding="utf-8")
    block = text.split("export const PROBLEMS_ZH = {", 1)[1].split("\n};", 1)[0]
    return dict(re.findall(r'^\s*"([a-z-]+)":\s*"([^"]+)",?$', block, re.M))


def test_every_agreement_refusal_reason_has_a_chinese_sentence() -> None:
    texts = _problems_zh()
    missing = [r.value for r in Reason if r.value not in texts] + [
        code for code in ("not-authorized",) if code not in texts
    ]
    assert missing == []
    for reason in [*Reason, "not-authorized"]:
        sentence = texts[str(reason)]
        assert re.search(r"[\u4e00-\u9fff]", sentence), reason
        assert not re.search(r"[a-z]{3,}", sentence), (reason, sentence)  # no English internals
        assert "请" in sentence, (reason, sentence)  # says what to do next


def _zh_block(start: str, end: str) -> str:
    """The first block of the zh texts that opens with ``start`` (the zh texts come
    before the en ones in the file)."""
    text = I18N.read_text(encoding="utf-8")
    return text.split(start, 1)[1].split(end, 1)[0]


def test_every_receipt_reason_a_partner_can_give_has_a_chinese_label() -> None:
    """``not-for-me``, ``sender-mismatch`` and ``duplicate-id-different-content`` read
    "对方拒收", the label of any other refusal, with no next step."""
    from relay.core.receiver import Reason as ReceiptReason

    block = _zh_block("\n    reasons: {", "\n    },")
    labels = dict(re.findall(r'^\s*"?([a-z*-]+)"?:\s*"([^"]+)",?$', block, re.M))
    missing = [r.value for r in ReceiptReason if r.value not in labels]
    assert missing == []
    for reason in ReceiptReason:
        assert re.search(r"[\u4e00-\u9fff]", labels[reason.value]), reason
        assert not re.search(r"[a-z]{3,}", labels[reason.value]), reason


def test_every_webhook_event_type_has_a_chinese_label() -> None:
    from relay.integration.events import EventType

    block = _zh_block("\n      types: {", "\n      },")
    labels = dict(re.findall(r'"([a-z-]+)":\s*"([^"]+)"', block))
    assert [t.value for t in EventType if t.value not in labels] == []
