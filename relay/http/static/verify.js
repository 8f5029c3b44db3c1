// tongban licence verification page: POST the token, show every check of the report.
"use strict";
(function () {
  const TEXT = {
    zh: {
      title: "电子证照核验", token: "证照内容（扫码所得文本）", check: "核验", checks: "核验项目",
      valid: "证照有效", invalid: "证照无效", other: "English", failed: "暂时无法核验，请稍后再试。",
      passed: "通过", skipped: "未检查", failedCheck: "未通过",
      signature: "印章签名", chain: "证书链", validity: "有效期", revocation: "是否吊销",
      suspension: "是否暂停", entitlement: "签发资格",
      number: "证照编号", holder: "持证人", type: "证照类型", issuer: "签发机关", until: "有效期至",
    },
    en: {
      title: "E-licence verification", token: "Licence text (from the QR code)", check: "Verify",
      checks: "Checks", valid: "Valid licence", invalid: "Not a valid licence", other: "中文",
      failed: "The licence cannot be checked right now.", passed: "passed", skipped: "not checked",
      failedCheck: "failed", signature: "Seal signature", chain: "Certificate chain",
      validity: "Validity period", revocation: "Revocation", suspension: "Suspension",
      entitlement: "Issuer entitlement", number: "Licence number", holder: "Holder",
      type: "Licence type", issuer: "Issued by", until: "Valid until",
    },
  };
  let lang = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh";
  let last = null;
  const $ = (id) => document.getElementById(id);
  const t = (key) => TEXT[lang][key] || key;

  function applyStatic() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("lang-switch").textContent = t("other");
    if (last) render(last);
  }

  function row(name, value, cls) {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = name;
    const b = document.createElement("td"); b.textContent = value;
    if (cls) b.className = cls;
    tr.append(a, b);
    return tr;
  }

  function render(report) {
    last = report;
    $("result").hidden = false;
    $("verdict").textContent = report.valid ? t("valid") : t("invalid");
    $("verdict").className = report.valid ? "valid" : "invalid";
    $("verdict").dataset.valid = String(report.valid);
    const lic = report.licence || null;
    const rows = [];
    if (lic) {
      rows.push(row(t("number"), lic.number || ""));
      rows.push(row(t("holder"), lic.holder_name || ""));
      rows.push(row(t("type"), lic.licence_type || ""));
      rows.push(row(t("issuer"), (lic.department ? lic.department[lang] : "") || lic.issuer_node || ""));
      rows.push(row(t("until"), lic.valid_until || ""));
    }
    $("licence").replaceChildren(...rows);
    $("checks").replaceChildren(...(report.checks || []).map((c) => {
      const label = c.outcome === "passed" ? t("passed") : c.outcome === "failed" ? t("failedCheck") : t("skipped");
      const tr = row(t(c.check), label + (c.code ? " (" + c.code + ")" : ""),
        c.outcome === "failed" ? "invalid" : c.outcome === "passed" ? "valid" : "muted");
      tr.dataset.check = c.check;
      tr.dataset.outcome = c.outcome;
      return tr;
    }));
  }

  async function check(event) {
    if (event) event.preventDefault();
    const response = await fetch("/public/v1/licences/verify", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("token").value.trim() }),
    });
    if (!response.ok) { $("error").textContent = t("failed"); $("error").hidden = false; return; }
    $("error").hidden = true;
    render(await response.json());
  }

  document.addEventListener("DOMContentLoaded", () => {
    applyStatic();
    $("verify-form").addEventListener("submit", check);
    $("lang-switch").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; applyStatic(); });
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) { $("token").value = token; check(null); }
  });
})();
