// tongban licence verification page. Opened from a licence QR code (/v#<compact licence>)
// it verifies at once; it also reads a QR code with the camera (BarcodeDetector) or takes
// pasted text (the verify URL, the compact credential or a vc+jwt).
"use strict";
(function () {
  const TEXT = {
    zh: {
      title: "电子证照核验", token: "证照内容（扫码所得网址或文本）", check: "核验", checks: "核验项目",
      valid: "有效", invalid: "无效", other: "English", failed: "暂时无法核验，请稍后再试。",
      scan: "用摄像头扫描证照二维码", scanning: "请将证照二维码对准摄像头……",
      noDetector: "此浏览器不能读取二维码，请用手机相机扫描证照上的二维码，或把扫码所得内容粘贴到下方。",
      noCamera: "无法打开摄像头，请检查权限，或把扫码所得内容粘贴到下方。",
      passed: "通过", skipped: "未检查", failedCheck: "未通过",
      signature: "印章签名", chain: "证书链", validity: "有效期", revocation: "是否吊销",
      suspension: "是否暂停", entitlement: "签发资格",
      number: "证照编号", holder: "持证人", holderId: "统一社会信用代码", type: "证照类型", scope: "许可范围",
      issuer: "签发机关", from: "有效期自", until: "有效期至",
      "r:valid": "该证照由签发机关盖章，未被篡改，在有效期内，未吊销、未暂停。",
      "r:malformed": "这不是通办电子证照。",
      "r:signature": "印章签名不符：证照内容被改动或系伪造。",
      "r:chain": "签发机关的印章证书不受信任。",
      "r:not-yet-valid": "证照尚未生效。",
      "r:expired": "证照已过期。",
      "r:revoked": "证照已被签发机关吊销。",
      "r:suspended": "证照已被签发机关暂停。",
      "r:issuer-not-entitled": "签发机关无权签发此类证照。",
      "r:status-unavailable": "暂时无法确认证照是否被吊销或暂停。",
      "r:unknown-issuer": "无法识别签发机关（本节点不认识该印章）。",
      unchecked: "以下项目未检查：",
    },
    en: {
      title: "E-licence verification", token: "Licence (the scanned address or text)", check: "Verify",
      checks: "Checks", valid: "Valid", invalid: "Not valid", other: "中文",
      failed: "The licence cannot be checked right now.",
      scan: "Scan the licence QR code with the camera", scanning: "Hold the licence QR code up to the camera…",
      noDetector: "This browser cannot read QR codes: scan the code with a phone camera, or paste what it read below.",
      noCamera: "The camera cannot be opened: check the permission, or paste the scanned text below.",
      passed: "passed", skipped: "not checked", failedCheck: "failed",
      signature: "Seal signature", chain: "Certificate chain", validity: "Validity period",
      revocation: "Revocation", suspension: "Suspension", entitlement: "Issuer entitlement",
      number: "Licence number", holder: "Holder", holderId: "Unified social credit code",
      type: "Licence type", scope: "Scope", issuer: "Issued by", from: "Valid from",
      until: "Valid until",
      "r:valid": "Sealed by the issuing office, unaltered, within its validity, neither revoked nor suspended.",
      "r:malformed": "This is not a tongban e-licence.",
      "r:signature": "The seal does not match: the licence was altered or forged.",
      "r:chain": "The issuing office's seal certificate is not trusted.",
      "r:not-yet-valid": "The licence is not valid yet.",
      "r:expired": "The licence has expired.",
      "r:revoked": "The licence has been revoked by its issuing office.",
      "r:suspended": "The licence is suspended by its issuing office.",
      "r:issuer-not-entitled": "The issuing office is not entitled to issue this kind of licence.",
      "r:status-unavailable": "Whether the licence was revoked or suspended cannot be established now.",
      "r:unknown-issuer": "The issuing office is not known here (its seal is not recognised).",
      unchecked: "Not checked: ",
    },
  };
  const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
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

  // A date and time in Beijing time, written the way the page's language writes it.
  function when(iso) {
    if (!iso) return "";
    const format = new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en-GB", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "long", day: "numeric",
      hour: "2-digit", minute: "2-digit", hour12: false,
    });
    return format.format(new Date(iso)) + (lang === "zh" ? "（北京时间）" : " (Beijing time)");
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
    $("verdict").className = "state " + (report.valid ? "valid" : "invalid");
    $("verdict").dataset.valid = String(report.valid);
    $("verdict").dataset.failure = report.failure || "";
    const skipped = (report.checks || []).filter((c) => c.outcome === "skipped").map((c) => t(c.check));
    let reason = t("r:" + (report.failure || "valid"));
    if (report.valid && skipped.length) reason = t("unchecked") + skipped.join(lang === "zh" ? "、" : ", ");
    $("reason").textContent = reason;
    const lic = report.licence || null;
    const names = report.names || {};
    const rows = [];
    if (lic) {
      const type = names.licence_type ? names.licence_type[lang] : lic.licence_type;
      const issuer = (names.issuer && names.issuer[lang]) || (lic.department ? lic.department[lang] : "");
      rows.push(row(t("type"), type || ""));
      rows.push(row(t("number"), lic.number || ""));
      rows.push(row(t("holder"), lic.holder_name || ""));
      rows.push(row(t("holderId"), lic.holder_id || ""));
      rows.push(row(t("scope"), lic.scope || ""));
      rows.push(row(t("issuer"), issuer || ""));
      rows.push(row(t("from"), when(lic.valid_from)));
      rows.push(row(t("until"), when(lic.valid_until)));
    }
    $("licence").replaceChildren(...rows);
    $("checks").replaceChildren(...(report.checks || []).map((c) => {
      const label = c.outcome === "passed" ? t("passed") : c.outcome === "failed" ? t("failedCheck") : t("skipped");
      const tr = row(t(c.check), label,
        c.outcome === "failed" ? "invalid" : c.outcome === "passed" ? "valid" : "muted");
      tr.dataset.check = c.check;
      tr.dataset.outcome = c.outcome;
      return tr;
    }));
  }

  async function verify(text) {
    text = text.trim();
    const body = JWS.test(text) ? { token: text } : { credential: text };
    let response;
    try {
      response = await fetch("/public/v1/licences/verify", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
    } catch (e) { response = null; }
    if (!response || !response.ok) { $("error").textContent = t("failed"); $("error").hidden = false; return; }
    $("error").hidden = true;
    render(await response.json());
  }

  // The compact credential from a verify URL's fragment (percent-decoded), or null.
  function fromFragment(hash) {
    const fragment = hash.replace(/^#/, "");
    if (!fragment) return null;
    if (fragment.startsWith("token=")) return new URLSearchParams(fragment).get("token");
    try { return decodeURIComponent(fragment); } catch (e) { return fragment; }
  }

  async function scan() {
    const note = $("scan-note");
    note.hidden = false;
    if (!("BarcodeDetector" in window)) { note.textContent = t("noDetector"); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch (e) { note.textContent = t("noCamera"); return; }
    const video = $("camera");
    video.srcObject = stream; video.hidden = false;
    await video.play();
    note.textContent = t("scanning");
    const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    const stop = () => { stream.getTracks().forEach((track) => track.stop()); video.hidden = true; note.hidden = true; };
    const tick = async () => {
      let codes = [];
      try { codes = await detector.detect(video); } catch (e) { codes = []; }
      if (codes.length) {
        stop();
        const text = codes[0].rawValue;
        const hash = text.indexOf("#");
        verify(hash >= 0 ? fromFragment(text.slice(hash)) || text : text);
        return;
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  document.addEventListener("DOMContentLoaded", () => {
    applyStatic();
    $("verify-form").addEventListener("submit", (event) => { event.preventDefault(); verify($("token").value); });
    $("lang-switch").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; applyStatic(); });
    $("scan").addEventListener("click", scan);
    const credential = fromFragment(location.hash);
    if (credential) verify(credential);
    window.addEventListener("hashchange", () => { const c = fromFragment(location.hash); if (c) verify(c); });
  });
})();
