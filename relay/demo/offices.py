"""The three offices of the demo, one per provincial federation."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DAFENG", "NINGJIN", "OFFICES", "WUCHANG", "Office"]


@dataclass(frozen=True)
class Office:
    node_id: str  # GB/T 2260 division code
    name_zh: str  # the office (as in certificates and the agreement)
    name_en: str
    place_zh: str  # the county or district, for short mentions
    place_en: str
    province_zh: str
    federation: str  # federation name (root CN "<federation> Root")
    federation_zh: str

    @property
    def short(self) -> str:
        """``420106 武昌区`` — how the narrative names an office."""
        return f"{self.node_id} {self.place_zh}"


WUCHANG = Office(
    "420106",
    "武汉市武昌区行政审批局",
    "Wuchang District Administrative Approval Bureau, Wuhan",
    "武昌区",
    "Wuchang District, Wuhan",
    "湖北省",
    "Hubei",
    "湖北",
)
DAFENG = Office(
    "320982",
    "盐城市大丰区行政审批局",
    "Dafeng District Administrative Approval Bureau, Yancheng",
    "大丰区",
    "Dafeng District, Yancheng",
    "江苏省",
    "Jiangsu",
    "江苏",
)
NINGJIN = Office(
    "371422",
    "宁津县行政审批服务局",
    "Ningjin County Administrative Approval Service Bureau",
    "宁津县",
    "Ningjin County, Dezhou",
    "山东省",
    "Shandong",
    "山东",
)
OFFICES: tuple[Office, ...] = (WUCHANG, DAFENG, NINGJIN)
