// tongban remote survey — shared page code (no build step; an ES module).
// The join link carries the token in the URL fragment: #token=...[&role=...]
// The fragment never reaches the server's logs; the page opens the signalling socket.

export const TEXT = {
  zh: {
    title_site: "远程勘查 — 现场端",
    title_inspector: "远程勘查 — 勘查端",
    lang: "English",
    connecting: "正在连接…",
    waiting: "等待勘查人员…",
    scheduled: "已预约",
    live: "勘查进行中",
    interrupted: "连接中断，正在重连…",
    completed: "勘查已完成",
    abandoned: "勘查已终止",
    converted_to_onsite: "已转为现场勘查",
    refused: "链接无法使用",
    reconnecting: "连接断开，正在重连…",
    camera_hint: "请用后置摄像头对准现场，按勘查人员的要求移动。",
    after_completed: "远程勘查已完成，谢谢配合。可以关闭本页面；勘查结论随办件进度告知，可在办件进度查询页面查看。",
    after_abandoned: "本次远程勘查已终止。勘查机关将与您联系另行安排；如有疑问，请联系勘查机关。",
    after_converted_to_onsite: "本次勘查改为现场勘查，勘查机关将与您联系约定上门时间。可以关闭本页面。",
    challenge_title: "核验码",
    challenge_hint: "请将此核验码展示给勘查人员（可读出或写在纸上对准镜头）。",
    geo_ok: "定位已共享",
    geo_waiting: "正在获取定位…",
    site: "勘查地点",
    snapshot: "截图取证",
    snapshots: "截图",
    challenge: "发送核验码",
    instruction: "附加指令（可选）",
    confirm: "确认通过",
    fail: "核验未通过",
    checklist: "勘查清单",
    pass: "符合",
    fail_item: "不符合",
    note: "备注",
    note_placeholder: "说明（不符合或备注时必填）",
    verdict: "勘查结论",
    v_pass: "通过",
    v_pass_with_corrections: "整改后通过",
    v_fail: "不通过",
    v_convert_to_onsite: "转现场勘查",
    remarks: "其他说明",
    sign: "签署勘查报告",
    signed: "报告已签章",
    abandon: "终止勘查",
    distance: "与勘查地点距离",
    accuracy: "精度",
    metres: "米",
    error: "错误",
    shown: "已在现场显示",
    segments: "已录制片段",
    // recording notice
    notice_title: "录像告知",
    notice_text:
      "本次远程勘查全程录像录音，录像、截图和手机定位将作为勘查证据保存在勘查机关，并随勘查报告一并签章。",
    notice_ack: "我已知悉，开始勘查",
    notice_done: "现场方已确认录像告知",
    notice_pending: "现场方尚未确认录像告知",
    // who is connected
    presence: "连接状态",
    presence_site: "现场方",
    presence_inspector: "勘查人员",
    joined: "已加入",
    not_joined: "未加入",
    camera: "摄像头",
    microphone: "麦克风",
    location: "定位",
    network: "网络",
    dev_on: "已开启",
    dev_off: "已关闭",
    dev_denied: "未授权",
    dev_absent: "无此设备",
    dev_unknown: "未知",
    dev_ok: "已共享",
    dev_waiting: "获取中",
    net_good: "良好",
    net_fair: "一般",
    net_poor: "较差",
    net_unknown: "未知",
    waiting_inspector: "录像已开始，等待勘查人员加入…",
    waiting_site: "等待现场方加入…",
    site_no_camera: "现场方摄像头不可用，勘查无法开始",
    camera_denied:
      "未获得摄像头权限，勘查无法开始。请在浏览器地址栏或系统设置中允许本网站使用摄像头，然后点“重试”。",
    camera_absent: "未找到可用的摄像头。请换用带摄像头的手机打开此链接，然后点“重试”。",
    mic_denied: "未获得麦克风权限，勘查人员听不到您的声音；可在浏览器设置中允许后点“重试”。",
    retry: "重试",
    camera_stopped: "勘查已结束，摄像头和麦克风已关闭。",
    geo_denied:
      "未获得定位权限：勘查人员将看到“无定位”。如需共享定位，请在浏览器设置中允许定位后点“重试”。",
    geo_absent: "此浏览器不支持定位：勘查人员将看到“无定位”。",
    switch_camera: "切换摄像头",
    mute: "静音",
    unmute: "取消静音",
    // challenge acknowledgement
    challenge_ack: "我已向勘查人员展示核验码",
    challenge_acked: "已确认展示，请等待勘查人员核对",
    shown_pending: "等待现场方确认展示",
    // case summary
    case_title: "案件信息",
    case_no: "案件编号",
    window: "预约时间",
    inspectors: "勘查人员",
    site_party: "现场方",
    // checklist and signing
    choose: "请选择",
    reason: "未满足核验条件时的说明",
    reason_placeholder: "如无现场定位或核验码未经双方确认，通过结论须写明理由，该说明将写入签章报告",
    confirm_title: "确认签署",
    confirm_text: "签署后报告即加盖电子印章，无法修改。请核对：",
    confirm_sign: "确认签署",
    cancel_sign: "返回修改",
    missing_location: "无在勘查地点范围内的定位",
    missing_challenge: "无经现场方确认并经您核对的核验码",
    nothing_missing: "定位和核验码均已满足",
    // readable report
    report_view: "报告内容",
    report_signed_text: "签章文本（JWS）",
    r_verdict: "勘查结论",
    r_items: "勘查清单",
    r_remarks: "其他说明",
    r_reason: "未满足核验条件的说明",
    r_missing: "未满足的核验条件",
    r_evidence: "证据",
    r_segments: "录像片段",
    r_snapshots: "截图",
    r_within: "定位在勘查地点范围内的时间占比",
    r_challenges: "核验码",
    r_interruptions: "中断次数",
    r_period: "勘查时间",
    r_confirmed: "已核对通过",
    r_failed: "核对未通过",
    r_open: "未核对",
    // errors (with the next step)
    err_generic: "操作未成功，请稍后重试；如仍失败请联系勘查机关。",
    "err_bad-request": "请求无法处理，请刷新页面后重试。",
    "err_not-allowed": "您的身份不能进行此操作。",
    "err_not-live": "勘查尚未开始或已中断：请等待现场方画面出现后再操作。",
    "err_no-video": "尚未收到现场画面：请等待画面出现后再截图。",
    "err_bad-challenge": "核验码已失效，请重新发送核验码。",
    "err_bad-geofix": "收到的定位无效，现场手机将自动重试。",
    "err_bad-state": "当前勘查状态不允许此操作，请刷新页面查看最新状态。",
    "err_bad-report": "报告内容有误（{item}）：不符合或备注的项目须填写说明。",
    "err_already-reported": "报告已签署，无需重复签署。",
    "err_session-ended": "本次勘查已结束，不能再进行此操作。如需补充，请联系勘查机关另行安排。",
    "err_seal-invalid": "本单位的电子印章证书已过期或尚未生效，报告无法签章：请联系管理员更新印章证书后再签署；勘查记录已保留，无需重新勘查。",
    "err_site-not-live": "现场方当前不在连线中，不能以“通过”“整改后通过”或“不通过”结束勘查：请等待现场方重新连接后再签署，或将结论改为“转现场勘查”。",
    "err_report-not-written": "报告未能保存到服务器，您填写的内容已留存：请稍后再点“签署勘查报告”；如仍失败，系统重启后会自动签署，请联系勘查机关确认。",
    err_unanswered: "“{item}”尚未作答：请为每一项选择符合、不符合或备注。",
    "err_no-verdict": "请选择勘查结论。",
    "err_pass-with-failed-item": "“{item}”为不符合，结论不能为通过：请改选“整改后通过”或“不通过”。",
    "err_reason-required": "结论为通过，但{missing}：请在“未满足核验条件时的说明”中写明理由，或改选其他结论。",
    // refusals of the link itself
    "refused_expired": "此链接已过期。请联系勘查机关重新发送勘查链接。",
    "refused_session-ended": "本次勘查已结束，链接不再可用。如有疑问请联系勘查机关。",
    "refused_used-on-other-device": "此链接已在另一部手机上打开过，只能在该手机上使用。请用原手机打开，或联系勘查机关重新发送链接。",
    "refused_not-yet-valid": "勘查尚未到预约时间，请在预约时间开始前 15 分钟内再打开此链接。",
    "refused_wrong-session": "找不到这次勘查：请确认链接完整，或联系勘查机关。",
    "refused_bad-token": "链接不完整或已损坏：请从短信或通知中重新打开完整链接。",
    "refused_wrong-audience": "此链接不属于本机关的勘查：请联系勘查机关。",
    "refused_role-not-granted": "此链接不能以该身份加入，请使用发给您的链接。",
    "refused_not-a-participant": "您已不在本次勘查的参与人员中，请联系勘查机关。",
    "refused_bad-request": "链接不完整：请从短信或通知中重新打开完整链接。",
    "refused_token-in-url": "链接格式已过时：请从通知中重新打开链接。",
    refused_replaced: "此链接已在本机的另一个页面中打开，本页面已停止。请使用最新打开的页面。",
    refused_other: "此链接无法使用，请联系勘查机关。",
  },
  en: {
    title_site: "Remote survey — site",
    title_inspector: "Remote survey — inspector",
    lang: "中文",
    connecting: "Connecting…",
    waiting: "Waiting for the inspector…",
    scheduled: "Scheduled",
    live: "Survey in progress",
    interrupted: "Connection lost, reconnecting…",
    completed: "Survey completed",
    abandoned: "Survey abandoned",
    converted_to_onsite: "Converted to an on-site visit",
    refused: "This link cannot be used",
    reconnecting: "Disconnected, reconnecting…",
    camera_hint: "Point the rear camera at the site and move as the inspector asks.",
    after_completed: "The remote survey is complete; thank you. You may close this page; its outcome comes with your case's progress, on the case tracking page.",
    after_abandoned: "This remote survey was stopped. The surveying office will contact you to arrange another; ask the surveying office with any questions.",
    after_converted_to_onsite: "The survey will be done on site: the surveying office will contact you to agree a visit. You may close this page.",
    challenge_title: "Verification code",
    challenge_hint: "Show this code to the inspector (read it out or hold it up to the camera).",
    geo_ok: "Location shared",
    geo_waiting: "Getting location…",
    site: "Site",
    snapshot: "Take snapshot",
    snapshots: "Snapshots",
    challenge: "Send challenge",
    instruction: "Extra instruction (optional)",
    confirm: "Confirm",
    fail: "Failed",
    checklist: "Checklist",
    pass: "Pass",
    fail_item: "Fail",
    note: "Note",
    note_placeholder: "Explanation (required for fail or note)",
    verdict: "Verdict",
    v_pass: "Pass",
    v_pass_with_corrections: "Pass with corrections",
    v_fail: "Fail",
    v_convert_to_onsite: "Convert to on-site visit",
    remarks: "Remarks",
    sign: "Sign survey report",
    signed: "Report sealed",
    abandon: "Abandon survey",
    distance: "Distance to site",
    accuracy: "accuracy",
    metres: "m",
    error: "Error",
    shown: "shown on site",
    segments: "Segments recorded",
    notice_title: "Recording notice",
    notice_text:
      "This remote survey is recorded (video and sound). The recording, snapshots and the phone's location are kept by the surveying office as evidence and sealed with the survey report.",
    notice_ack: "I understand, start the survey",
    notice_done: "The site party acknowledged the recording notice",
    notice_pending: "The site party has not yet acknowledged the recording notice",
    presence: "Who is connected",
    presence_site: "Site party",
    presence_inspector: "Inspector",
    joined: "joined",
    not_joined: "not joined",
    camera: "Camera",
    microphone: "Microphone",
    location: "Location",
    network: "Network",
    dev_on: "on",
    dev_off: "off",
    dev_denied: "not allowed",
    dev_absent: "none",
    dev_unknown: "unknown",
    dev_ok: "shared",
    dev_waiting: "waiting",
    net_good: "good",
    net_fair: "fair",
    net_poor: "poor",
    net_unknown: "unknown",
    waiting_inspector: "Recording has started; waiting for the inspector to join…",
    waiting_site: "Waiting for the site party to join…",
    site_no_camera: "The site party's camera is not available; the survey cannot start",
    camera_denied:
      "Camera permission was not granted, so the survey cannot start. Allow this site to use the camera in the browser or system settings, then press Retry.",
    camera_absent: "No camera was found. Open this link on a phone with a camera, then press Retry.",
    mic_denied: "Microphone permission was not granted; the inspector cannot hear you. Allow it in the browser settings and press Retry.",
    retry: "Retry",
    camera_stopped: "The survey has ended; camera and microphone are off.",
    geo_denied:
      "Location permission was not granted: the inspector will see \"no location\". To share it, allow location in the browser settings and press Retry.",
    geo_absent: "This browser cannot share a location: the inspector will see \"no location\".",
    switch_camera: "Switch camera",
    mute: "Mute",
    unmute: "Unmute",
    challenge_ack: "I have shown the code to the inspector",
    challenge_acked: "Confirmed; wait for the inspector to check it",
    shown_pending: "waiting for the site party to confirm it was shown",
    case_title: "Case",
    case_no: "Case number",
    window: "Appointment",
    inspectors: "Inspectors",
    site_party: "Site party",
    choose: "Choose…",
    reason: "Reason when proof is missing",
    reason_placeholder: "A pass without a location on site or without a challenge confirmed by both sides needs a reason; it is sealed in the report",
    confirm_title: "Confirm signing",
    confirm_text: "Once signed, the report is sealed and cannot be changed. Please check:",
    confirm_sign: "Sign now",
    cancel_sign: "Go back",
    missing_location: "no location within the site radius",
    missing_challenge: "no challenge acknowledged on site and confirmed by you",
    nothing_missing: "location and challenge are both proven",
    report_view: "Report",
    report_signed_text: "Signed text (JWS)",
    r_verdict: "Verdict",
    r_items: "Checklist",
    r_remarks: "Remarks",
    r_reason: "Reason for missing proof",
    r_missing: "Missing proof",
    r_evidence: "Evidence",
    r_segments: "Recorded segments",
    r_snapshots: "Snapshots",
    r_within: "Share of the live time located on site",
    r_challenges: "Challenges",
    r_interruptions: "Interruptions",
    r_period: "Survey time",
    r_confirmed: "confirmed",
    r_failed: "failed",
    r_open: "not checked",
    err_generic: "That did not work; please try again. If it keeps failing, contact the surveying office.",
    "err_bad-request": "The request could not be processed; reload the page and try again.",
    "err_not-allowed": "Your role cannot do this.",
    "err_not-live": "The survey has not started or is interrupted: wait for the site's picture, then try again.",
    "err_no-video": "No picture from the site yet: wait for it, then take the snapshot.",
    "err_bad-challenge": "That challenge is no longer valid; send a new one.",
    "err_bad-geofix": "The location received was invalid; the phone will retry by itself.",
    "err_bad-state": "The survey's state does not allow this; reload the page to see the current state.",
    "err_bad-report": "The report has a problem ({item}): a fail or note answer needs an explanation.",
    "err_already-reported": "The report is already signed.",
    "err_session-ended": "This survey has ended; this can no longer be done. Contact the surveying office to arrange anything further.",
    "err_seal-invalid": "This office's seal certificate has expired or is not yet valid, so the report cannot be sealed: ask the administrator to renew it, then sign again. The survey's record is kept; nothing needs surveying again.",
    "err_site-not-live": "The site party is not connected, so the survey cannot end as pass, pass with corrections or fail: wait for them to reconnect and sign then, or change the verdict to “Convert to on-site visit”.",
    "err_report-not-written": "The report could not be saved on the server; what you entered is kept: press “Sign survey report” again in a moment. If it still fails, it is signed when the system restarts; ask the surveying office to confirm.",
    err_unanswered: "\"{item}\" is not answered: choose pass, fail or note for every item.",
    "err_no-verdict": "Choose a verdict.",
    "err_pass-with-failed-item": "\"{item}\" failed, so the verdict cannot be pass: choose pass with corrections or fail.",
    "err_reason-required": "The verdict is pass but there is {missing}: write a reason in \"Reason when proof is missing\", or choose another verdict.",
    "refused_expired": "This link has expired. Ask the surveying office to send a new survey link.",
    "refused_session-ended": "This survey has ended; the link can no longer be used. Contact the surveying office with any questions.",
    "refused_used-on-other-device": "This link was already opened on another phone and only works there. Use that phone, or ask the surveying office for a new link.",
    "refused_not-yet-valid": "It is too early: open this link within 15 minutes of the appointment.",
    "refused_wrong-session": "This survey cannot be found: check that the link is complete, or contact the surveying office.",
    "refused_bad-token": "The link is incomplete or damaged: open the full link from the message again.",
    "refused_wrong-audience": "This link is not for this office's survey: contact the surveying office.",
    "refused_role-not-granted": "This link cannot join in that role; use the link you were sent.",
    "refused_not-a-participant": "You are no longer a participant of this survey; contact the surveying office.",
    "refused_bad-request": "The link is incomplete: open the full link from the message again.",
    "refused_token-in-url": "This link format is outdated: open the link from the message again.",
    refused_replaced: "This link was opened in another page on this device; this page has stopped. Use the newer page.",
    refused_other: "This link cannot be used; contact the surveying office.",
  },
};

let lang = localStorage.getItem("tongban-lang") === "en" ? "en" : "zh";

export function t(key, values) {
  let text = TEXT[lang][key] ?? key;
  for (const [name, value] of Object.entries(values || {})) text = text.replaceAll(`{${name}}`, value);
  return text;
}

export function currentLanguage() {
  return lang;
}

// A refused action, in the page's language with the next step; never the server's English.
export function errorText(msg, itemText) {
  const key = `err_${msg.code}`;
  const item = msg.item ? itemText(msg.item) : "";
  const missing = (msg.missing || []).map((m) => t(`missing_${m}`)).join(lang === "zh" ? "、" : " and ");
  return TEXT[lang][key] ? t(key, { item, missing }) : t("err_generic");
}

// Why the link itself was refused (close reason), in the page's language.
export function refusalText(reason) {
  return TEXT[lang][`refused_${reason}`] ? t(`refused_${reason}`) : t("refused_other");
}

export function formatTime(ms) {
  return new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { dateStyle: "medium", timeStyle: "short" });
}

// Fill a summary list: [[labelKey, value], ...] into <dl id=...> ("=text" labels as is).
export function fillList(dl, rows) {
  dl.replaceChildren();
  for (const [key, value] of rows) {
    const dt = document.createElement("dt");
    if (key.startsWith("=")) dt.textContent = key.slice(1); // a label that is data, not a key
    else {
      dt.dataset.t = key;
      dt.textContent = t(key);
    }
    const dd = document.createElement("dd");
    dd.textContent = value;
    dl.append(dt, dd);
  }
}

// Show one side's presence (joined, devices, network) in element `el`.
export function showPresence(el, who, shown = ["camera", "microphone", "location"]) {
  el.dataset.joined = who && who.joined ? "yes" : "no";
  const parts = [who && who.joined ? `${who.name} ${t("joined")}` : t("not_joined")];
  if (who && who.joined) {
    for (const dev of shown) {
      const value = who[dev] || "unknown";
      el.dataset[dev] = value;
      parts.push(`${t(dev)}：${t(`dev_${value}`)}`);
    }
    el.dataset.network = who.network || "unknown";
    parts.push(`${t("network")}：${t(`net_${who.network || "unknown"}`)}`);
  }
  el.textContent = parts.join(lang === "zh" ? "；" : "; ");
}

// Network quality from the selected ICE candidate pair's round-trip time.
export async function networkQuality(pc) {
  if (!pc) return "unknown";
  try {
    const stats = await pc.getStats();
    for (const report of stats.values()) {
      if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded") {
        const rtt = report.currentRoundTripTime;
        if (rtt === undefined) return "unknown";
        return rtt < 0.15 ? "good" : rtt < 0.4 ? "fair" : "poor";
      }
    }
  } catch {
    return "unknown";
  }
  return "unknown";
}

export function applyText() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll("[data-t-placeholder]")) {
    el.placeholder = t(el.dataset.tPlaceholder);
  }
  if (document.body.dataset.title) document.title = t(document.body.dataset.title);
}

export function setupLanguage(onChange) {
  const button = document.getElementById("lang");
  button.addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("tongban-lang", lang);
    applyText();
    if (onChange) onChange();
  });
  applyText();
}

export function deviceId() {
  let id = localStorage.getItem("tongban-survey-device");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("tongban-survey-device", id);
  }
  return id;
}

export function linkParams() {
  return new URLSearchParams(location.hash.slice(1));
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 5000); // answer with what has been gathered by then
  });
}

// Connect to the survey as `role`; `media()` returns the local MediaStream to send.
// handlers: onMessage(msg), onTrack(event), onClose(code, reason) -> true to retry.
export function connect(role, media, handlers) {
  const params = linkParams();
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  // the token goes in the first message, never in a URL (URLs end up in access logs)
  url.search = new URLSearchParams({ device: deviceId(), role: params.get("role") || role }).toString();
  const link = { ws: null, pc: null, iceServers: [] };
  const open = () => {
    const ws = new WebSocket(url);
    link.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "join", token: params.get("token") || "" }));
    ws.onmessage = async (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "welcome") link.iceServers = msg.iceServers || [];
      if (msg.type === "offer") {
        if (link.pc) link.pc.close();
        const pc = new RTCPeerConnection({ iceServers: link.iceServers });
        link.pc = pc;
        pc.ontrack = handlers.onTrack;
        await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
        const stream = await media();
        if (stream) for (const track of stream.getTracks()) pc.addTrack(track, stream);
        await pc.setLocalDescription(await pc.createAnswer());
        await gathered(pc);
        ws.send(JSON.stringify({ type: "answer", sdp: pc.localDescription.sdp }));
        return;
      }
      handlers.onMessage(msg);
    };
    ws.onclose = (event) => {
      if (link.pc) link.pc.close();
      link.pc = null;
      if (handlers.onClose(event.code, event.reason)) setTimeout(open, 2000);
    };
  };
  open();
  link.send = (msg) => link.ws && link.ws.readyState === 1 && link.ws.send(JSON.stringify(msg));
  return link;
}

// Close codes 4400-4499 are refusals of the link itself: retrying cannot help.
export function isRefusal(code) {
  return code >= 4400 && code < 4500;
}
