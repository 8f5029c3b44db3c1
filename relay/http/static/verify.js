// tongban licence verification page. Opened from a licence QR code (/v#<compact licence>)
// it verifies at once; it also reads a QR code with the camera or takes pasted text (the
// verify URL, the compact credential or a vc+jwt). The camera is read with the browser's
// BarcodeDetector where it exists; elsewhere (Chromium on Linux, Chrome on Windows) a
// still every ~400 ms goes to POST /public/v1/qr-decode on this node, which reads it.
"use strict";
(function () {
  const TEXT = {
    zh: {
      title: "电子证照核验", token: "证照内容（扫码所得网址或文本）", check: "核验", checks: "核验项目",
      valid: "有效", invalid: "无效", other: "English", failed: "暂时无法核验，请稍后再试。",
      scan: "用摄像头扫描证照二维码", scanning: "请将证照二维码对准摄像头……",
      noCamera: "没有找到可用的摄像头（或摄像头正被其他程序占用）：请接好摄像头、关闭占用它的程序后再按扫描，或用手机相机扫描证照上的二维码。",
      denied: "浏览器未允许本网页使用摄像头：请在地址栏的摄像头图标处选择“允许”，再按一次扫描；也可以把扫码所得内容粘贴到下方。",
      notFound: "还没有识别出二维码：请把证照二维码放在摄像头前约二十厘米处、占画面一半左右，保持平稳、避免反光。",
      busy: "核验服务繁忙，正在稍后重试……",
      stopped: "已停止扫描：没有识别出二维码。请再按一次扫描重试，或把扫码所得内容粘贴到下方。",
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
      unknown: "无法确认",
      "n:malformed": "请确认扫描的是通办电子证照上的二维码；纸质证照请向签发机关核实。",
      "n:signature": "请勿采信此证照，并向签发机关或当地市场监管部门反映。",
      "n:chain": "请联系签发机关核实证照；如为本核验点的问题，请稍后再试。",
      "n:not-yet-valid": "证照自有效期开始之日起方可使用，请届时再核验。",
      "n:expired": "请持证人向签发机关申请延续或重新办理。",
      "n:revoked": "该证照已失效，请勿采信；如有疑问，请联系签发机关。",
      "n:suspended": "暂停期间证照不能使用；恢复时间请向签发机关了解。",
      "n:issuer-not-entitled": "请勿采信，并向签发机关或其上级主管部门反映。",
      "n:status-unavailable": "签名和有效期均已核验，但暂时取不到签发机关的吊销、暂停信息：请稍后再核验；仍无法确认时，请联系签发机关。",
      "n:unknown-issuer": "请到签发机关的政务服务网站核验，或直接联系签发机关。",
      "e:400": "这不是可以核验的证照内容：请重新扫描证照二维码，或粘贴扫码所得的完整网址。",
      "e:413": "内容过长，不是通办电子证照：请重新扫描证照二维码。",
      "e:429": "核验请求过于频繁，请稍等一分钟后再试。",
      unchecked: "以下项目未检查：",
    },
    en: {
      title: "E-licence verification", token: "Licence (the scanned address or text)", check: "Verify",
      checks: "Checks", valid: "Valid", invalid: "Not valid", other: "中文",
      failed: "The licence cannot be checked right now.",
      scan: "Scan the licence QR code with the camera", scanning: "Hold the licence QR code up to the camera…",
      noCamera: "No usable camera was found (or another program is using it): connect the camera or close that program and press Scan again, or scan the code with a phone camera.",
      denied: "The browser does not allow this page to use the camera: choose \u201cAllow\u201d at the camera icon in the address bar and press Scan again, or paste the scanned text below.",
      notFound: "No QR code recognised yet: hold the licence code about 20 cm from the camera, filling about half the picture, steady and without glare.",
      busy: "The verification service is busy; retrying shortly…",
      stopped: "Scanning stopped: no QR code was recognised. Press Scan to try again, or paste the scanned text below.",
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
      unknown: "Cannot be confirmed",
      "n:malformed": "Make sure you scanned the QR code of a tongban e-licence; for a paper licence, ask the issuing office.",
      "n:signature": "Do not rely on this licence; report it to the issuing office or the local market regulator.",
      "n:chain": "Ask the issuing office to confirm the licence; if the problem is on this verification point, try again later.",
      "n:not-yet-valid": "The licence may be used from the start of its validity; verify it again then.",
      "n:expired": "The holder should ask the issuing office to renew or reissue it.",
      "n:revoked": "The licence is void: do not rely on it; ask the issuing office if in doubt.",
      "n:suspended": "The licence may not be used while suspended; ask the issuing office when it resumes.",
      "n:issuer-not-entitled": "Do not rely on it; report it to the issuing office or its supervising department.",
      "n:status-unavailable": "Seal and validity were checked, but the issuing office's revocation and suspension lists cannot be fetched now: verify again later, or ask the issuing office.",
      "n:unknown-issuer": "Verify it on the issuing office's own government service site, or ask the office.",
      "e:400": "This is nothing that can be verified: scan the licence QR code again, or paste the whole scanned address.",
      "e:413": "Too long to be a tongban e-licence: scan the licence QR code again.",
      "e:429": "Too many verifications just now: wait a minute and try again.",
      unchecked: "Not checked: ",
    },
  };
  const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
  const asked = new URLSearchParams(location.search).get("lang");
  let saved = null;
  try { saved = localStorage.getItem("tongban.lang"); } catch (e) { /* site data blocked */ }
  let lang = (asked || saved) === "en" ? "en" : "zh";
  let last = null;
  const $ = (id) => document.getElementById(id);
  const t = (key) => TEXT[lang][key] || key;

  function applyStatic() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("lang-switch").textContent = t("other");
    if (noteKey) $("scan-note").textContent = t(noteKey);
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
    // an unconfirmable status is no proof of invalidity: said apart, neither green nor red
    const unknown = !report.valid && report.failure === "status-unavailable";
    $("verdict").textContent = report.valid ? t("valid") : unknown ? t("unknown") : t("invalid");
    $("verdict").className = "state " + (report.valid ? "valid" : unknown ? "unknown" : "invalid");
    $("verdict").dataset.valid = String(report.valid);
    $("verdict").dataset.failure = report.failure || "";
    const skipped = (report.checks || []).filter((c) => c.outcome === "skipped").map((c) => t(c.check));
    let reason = t("r:" + (report.failure || "valid"));
    if (report.valid && skipped.length) reason = t("unchecked") + skipped.join(lang === "zh" ? "、" : ", ");
    $("reason").textContent = reason;
    const next = report.valid ? "" : t("n:" + report.failure);
    $("next").textContent = next.startsWith("n:") ? "" : next;
    $("next").hidden = !$("next").textContent;
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
    if (!response || !response.ok) {
      // bad input says what to do about it; only what may pass later says "later"
      const known = response && ["e:400", "e:413", "e:429"].includes("e:" + response.status);
      $("error").textContent = known ? t("e:" + response.status) : t("failed");
      $("error").hidden = false;
      return;
    }
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

  const FRAME_MS = 400; // one still to the node this often, without BarcodeDetector
  const HINT_MS = 8000; // then say how to hold the code
  const GIVE_UP_MS = 120000; // then stop the camera
  const MAX_SIDE = 960; // stills are scaled down to this many pixels a side
  let noteKey = null;
  let scanning = false;

  function say(key) {
    noteKey = key;
    $("scan-note").hidden = !key;
    $("scan-note").textContent = key ? t(key) : "";
  }

  // What a scanned code holds, verified as if the page had been opened from it.
  function scanned(text) {
    const hash = text.indexOf("#");
    verify(hash >= 0 ? fromFragment(text.slice(hash)) || text : text);
  }

  async function openCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { say("noCamera"); return null; }
    try {
      return await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch (e) {
      say(e && (e.name === "NotAllowedError" || e.name === "SecurityError") ? "denied" : "noCamera");
      return null;
    }
  }

  // One still of the video as a JPEG, at most MAX_SIDE pixels a side.
  function still(video, canvas) {
    const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  }

  // The node reads the still: its text, null when none is found; throws a delay in ms
  // when the node asks to wait.
  async function readOnNode(blob) {
    const response = await fetch("/public/v1/qr-decode", {
      method: "POST", headers: { "Content-Type": "image/jpeg" }, body: blob,
    });
    if (response.status === 429 || response.status === 503) {
      throw 1000 * Math.max(1, Number(response.headers.get("Retry-After")) || 1);
    }
    if (!response.ok) return null;
    return (await response.json()).text || null;
  }

  async function scan() {
    if (scanning) return;
    const stream = await openCamera();
    if (!stream) return;
    scanning = true;
    const video = $("camera");
    video.srcObject = stream; video.hidden = false;
    await video.play();
    say("scanning");
    const started = Date.now();
    const stop = (key) => {
      scanning = false;
      stream.getTracks().forEach((track) => track.stop());
      video.hidden = true;
      say(key);
    };
    const detector = "BarcodeDetector" in window ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
    const canvas = document.createElement("canvas");
    const tick = async () => {
      const elapsed = Date.now() - started;
      if (elapsed > GIVE_UP_MS) { stop("stopped"); return; }
      if (elapsed > HINT_MS && noteKey === "scanning") say("notFound");
      let text = null;
      let wait = detector ? 0 : FRAME_MS;
      try {
        if (detector) {
          const codes = await detector.detect(video);
          text = codes.length ? codes[0].rawValue : null;
        } else if (video.videoWidth) {
          text = await readOnNode(await still(video, canvas));
          if (noteKey === "busy") say("scanning");
        }
      } catch (delay) {
        if (typeof delay === "number") { wait = delay; say("busy"); }
      }
      if (text) { stop(null); scanned(text); return; }
      if (detector) requestAnimationFrame(tick); else setTimeout(tick, wait);
    };
    tick();
  }

  document.addEventListener("DOMContentLoaded", () => {
    applyStatic();
    $("verify-form").addEventListener("submit", (event) => { event.preventDefault(); verify($("token").value); });
    $("lang-switch").addEventListener("click", () => {
      lang = lang === "zh" ? "en" : "zh";
      try { localStorage.setItem("tongban.lang", lang); } catch (e) { /* private mode */ }
      const url = new URL(location.href);
      url.searchParams.set("lang", lang);
      history.replaceState(null, "", url);
      applyStatic();
    });
    $("scan").addEventListener("click", scan);
    const credential = fromFragment(location.hash);
    if (credential) verify(credential);
    window.addEventListener("hashchange", () => { const c = fromFragment(location.hash); if (c) verify(c); });
  });
})();
