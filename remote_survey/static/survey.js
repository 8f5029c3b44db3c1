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
    challenge_title: "核验码",
    challenge_hint: "请将此核验码展示给勘查人员（可读出或写在纸上对准镜头）。",
    geo_ok: "定位已共享",
    geo_denied: "未获得定位权限",
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
    challenge_title: "Verification code",
    challenge_hint: "Show this code to the inspector (read it out or hold it up to the camera).",
    geo_ok: "Location shared",
    geo_denied: "Location permission not granted",
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
  },
};

let lang = localStorage.getItem("tongban-lang") === "en" ? "en" : "zh";

export function t(key) {
  return TEXT[lang][key] ?? key;
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
  url.search = new URLSearchParams({
    token: params.get("token") || "",
    device: deviceId(),
    role: params.get("role") || role,
  }).toString();
  const link = { ws: null, pc: null, iceServers: [] };
  const open = () => {
    const ws = new WebSocket(url);
    link.ws = ws;
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
