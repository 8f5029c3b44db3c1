// The inspector's page (also the observer's, with the controls hidden).
import {
  applyText,
  connect,
  currentLanguage,
  errorText,
  fillList,
  formatTime,
  isRefusal,
  linkParams,
  networkQuality,
  refusalText,
  setupLanguage,
  showPresence,
  t,
} from "./survey.js";

const $ = (id) => document.getElementById(id);
const FINAL = ["completed", "abandoned", "converted_to_onsite"];
const PASSING = ["pass", "pass_with_corrections"];
const role = linkParams().get("role") || "inspector";
const snapshots = [];
const challenges = new Map(); // id -> {code, shown, result}
let checklist = [];
let welcome = null;
let presence = null;
let state = "connecting";
let refusal = null;
let challengeId = null;
let located = false; // a fix within the site radius arrived while live
let signedReport = null;
let mic = null;
let lastError = null;
const devices = { camera: "absent", microphone: "unknown", location: "absent", network: "unknown" };

function itemText(id) {
  const item = checklist.find((i) => i.id === id);
  return item ? item.text : id;
}

function render() {
  const el = $("status");
  let key = state;
  if (refusal !== null) key = "refused";
  else if (state === "scheduled" && presence) {
    const site = presence.site;
    if (!site.joined) key = "waiting_site";
    else if (site.camera === "denied" || site.camera === "absent") key = "site_no_camera";
  }
  el.dataset.state = key;
  el.dataset.t = key;
  el.textContent = t(key);
  $("reason").hidden = refusal === null;
  if (refusal !== null) $("reason").textContent = refusalText(refusal);
  if (presence) {
    showPresence($("presence-site"), presence.site);
    $("notice-state").dataset.acknowledged = presence.notice ? "yes" : "no";
    $("notice-state").textContent = t(presence.notice ? "notice_done" : "notice_pending");
  }
  if (welcome) {
    fillList($("case"), [
      ["case_no", welcome.case],
      ["site", welcome.site.address],
      ["window", `${formatTime(welcome.window.start_ms)} – ${formatTime(welcome.window.end_ms)}`],
      ["site_party", welcome.site_party],
      ["inspectors", welcome.inspectors.join("、")],
    ]);
  }
  $("error").textContent = lastError ? errorText(lastError, itemText) : "";
  if (signedReport) renderReport();
  $("mute").dataset.t = devices.microphone === "off" ? "unmute" : "mute";
  $("mute").textContent = t($("mute").dataset.t);
}

function renderChecklist() {
  const list = $("checklist");
  list.replaceChildren();
  for (const item of checklist) {
    const li = document.createElement("li");
    li.dataset.item = item.id;
    const text = document.createElement("p");
    text.textContent = item.text;
    const answer = document.createElement("select");
    answer.className = "answer";
    for (const [value, key] of [["", "choose"], ["pass", "pass"], ["fail", "fail_item"], ["note", "note"]]) {
      const option = document.createElement("option");
      option.value = value;
      option.dataset.t = key;
      option.textContent = t(key);
      answer.append(option);
    }
    answer.addEventListener("change", () => li.classList.remove("missing"));
    const note = document.createElement("input");
    note.className = "note";
    note.type = "text";
    note.maxLength = 4000;
    note.dataset.tPlaceholder = "note_placeholder";
    note.placeholder = t("note_placeholder");
    const links = document.createElement("div");
    links.className = "links";
    li.append(text, answer, note, links);
    list.append(li);
  }
  renderLinks();
}

function thumbnail(snap, n) {
  const img = document.createElement("img");
  img.src = snap.thumbnail;
  img.alt = `${t("snapshots")} #${n + 1}`;
  img.className = "thumb";
  return img;
}

// Each checklist item links snapshots by ticking their thumbnails.
function renderLinks() {
  for (const div of document.querySelectorAll("#checklist .links")) {
    const checked = new Set(Array.from(div.querySelectorAll("input:checked"), (i) => i.value));
    div.replaceChildren();
    snapshots.forEach((snap, n) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = snap.sha256;
      box.checked = checked.has(snap.sha256);
      label.append(box, thumbnail(snap, n), ` #${n + 1}`);
      div.append(label);
    });
  }
}

function answers() {
  return Array.from(document.querySelectorAll("#checklist li"), (li) => ({
    item: li.dataset.item,
    answer: li.querySelector(".answer").value,
    note: li.querySelector(".note").value,
    snapshots: Array.from(li.querySelectorAll(".links input:checked"), (i) => i.value),
  }));
}

// The proofs a pass verdict would be signed without (the server checks the same).
function missingProof() {
  const missing = [];
  if (!located) missing.push("location");
  const ok = Array.from(challenges.values()).some((c) => c.shown && c.result === "confirmed");
  if (!ok) missing.push("challenge");
  return missing;
}

// Checked on the page first, so the inspector fixes it before anything is ended.
function precheck() {
  for (const li of document.querySelectorAll("#checklist li")) li.classList.remove("missing");
  const given = answers();
  const open = given.find((a) => a.answer === "");
  if (open) {
    document.querySelector(`#checklist li[data-item="${open.item}"]`).classList.add("missing");
    return { code: "unanswered", item: open.item };
  }
  const unexplained = given.find((a) => a.answer !== "pass" && !a.note.trim());
  if (unexplained) return { code: "bad-report", item: unexplained.item };
  const verdict = $("verdict").value;
  if (!verdict) return { code: "no-verdict" };
  const failed = given.find((a) => a.answer === "fail");
  if (verdict === "pass" && failed) return { code: "pass-with-failed-item", item: failed.item };
  const missing = missingProof();
  if (PASSING.includes(verdict) && missing.length && !$("guard-reason").value.trim()) {
    return { code: "reason-required", missing };
  }
  return null;
}

function openConfirmation() {
  const ul = $("confirm-summary");
  ul.replaceChildren();
  const line = (text) => {
    const li = document.createElement("li");
    li.textContent = text;
    ul.append(li);
  };
  const verdict = $("verdict").value;
  line(`${t("verdict")}：${t(`v_${verdict}`)}`);
  for (const a of answers()) {
    const key = a.answer === "fail" ? "fail_item" : a.answer;
    line(`${itemText(a.item)}：${t(key)}${a.note ? ` — ${a.note}` : ""}`);
  }
  const missing = PASSING.includes(verdict) ? missingProof() : [];
  if (missing.length) {
    line(`${t("r_missing")}：${missing.map((m) => t(`missing_${m}`)).join("、")}`);
    line(`${t("r_reason")}：${$("guard-reason").value.trim()}`);
  } else if (PASSING.includes(verdict)) line(t("nothing_missing"));
  $("confirm-box").hidden = false;
  $("confirm-sign").focus();
}

function decodeReport(token) {
  const part = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
  const bytes = Uint8Array.from(atob(part + "=".repeat((4 - (part.length % 4)) % 4)), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// The sealed report, readable (in the page's language) beside its signed text.
function renderReport() {
  const r = signedReport;
  const items = new Map(r.survey.checklist.map((i) => [i.item, i.text]));
  const digests = r.evidence.snapshots.map((s) => s.sha256);
  const rows = [
    ["r_verdict", t(`v_${r.verdict}`)],
    ["r_period", `${formatTime(r.survey.start_ms)} – ${formatTime(r.survey.end_ms)}`],
  ];
  for (const a of r.checklist) {
    const key = a.answer === "fail" ? "fail_item" : a.answer;
    const linked = a.snapshots.map((h) => `#${digests.indexOf(h) + 1}`).join(" ");
    const extra = [a.note, linked ? `${t("snapshots")} ${linked}` : ""].filter(Boolean).join("；");
    rows.push([`=${items.get(a.item) || a.item}`, `${t(key)}${extra ? ` — ${extra}` : ""}`]);
  }
  if (r.remarks) rows.push(["r_remarks", r.remarks]);
  if (r.guard) {
    rows.push(["r_missing", r.guard.missing.map((m) => t(`missing_${m}`)).join("、")]);
    rows.push(["r_reason", r.guard.reason]);
  }
  const geo = r.evidence.geolocation;
  const outcome = { confirmed: "r_confirmed", failed: "r_failed" };
  rows.push(
    ["r_segments", String(r.evidence.segments.length)],
    ["r_snapshots", String(r.evidence.snapshots.length)],
    ["r_within", `${(geo.within_permille / 10).toFixed(1)}%`],
    [
      "r_challenges",
      r.evidence.challenges.map((c) => `${c.challenge.split(" ")[0]} ${t(outcome[c.result] || "r_open")}`).join("；") ||
        "—",
    ],
    ["r_interruptions", String(r.evidence.interruptions.length)],
  );
  fillList($("report-view"), rows);
  $("report-view").lang = currentLanguage() === "zh" ? "zh-CN" : "en";
}

// After signing or at the end nothing more can be done on this page.
function lockControls() {
  for (const el of document.querySelectorAll(".inspector-only button, .inspector-only input, .inspector-only select, .inspector-only textarea")) {
    if (el.id !== "report-token") el.disabled = true;
  }
  if (mic) for (const track of mic.getTracks()) track.stop();
}

function start() {
  setupLanguage(() => {
    render();
    renderLinks();
  });
  if (role !== "inspector") for (const el of document.querySelectorAll(".inspector-only")) el.hidden = true;
  const media = async () => {
    if (role !== "inspector") return null;
    try {
      mic = mic || (await navigator.mediaDevices.getUserMedia({ audio: true, video: false }));
      devices.microphone = "on";
    } catch (error) {
      devices.microphone = error && error.name === "NotAllowedError" ? "denied" : "absent";
    }
    link.send({ type: "status", ...devices });
    return mic;
  };
  const link = connect(role, media, {
    onTrack: (event) => {
      const target = event.track.kind === "video" ? $("video") : $("sound");
      target.srcObject = new MediaStream([event.track]);
    },
    onMessage: (msg) => {
      switch (msg.type) {
        case "welcome":
          welcome = msg;
          checklist = msg.checklist;
          renderChecklist();
          state = msg.state;
          if (FINAL.includes(state)) lockControls();
          break;
        case "state":
          state = msg.state;
          if (FINAL.includes(state) && (state === "abandoned" || signedReport)) lockControls();
          break;
        case "presence":
          presence = msg;
          break;
        case "segment": {
          const count = String(Number($("segments").dataset.count) + 1);
          $("segments").dataset.count = count;
          $("segments").textContent = count;
          break;
        }
        case "snapshot": {
          snapshots.push(msg);
          const li = document.createElement("li");
          li.dataset.sha256 = msg.sha256;
          li.title = `${msg.name} sha256 ${msg.sha256}`;
          li.append(thumbnail(msg, snapshots.length - 1), ` #${snapshots.length}`);
          $("snapshots").append(li);
          renderLinks();
          break;
        }
        case "geofix":
          if (welcome && msg.distance_m <= welcome.radius_m) located = true;
          $("distance").dataset.m = msg.distance_m.toFixed(1);
          $("distance").textContent =
            `${msg.distance_m.toFixed(1)} ${t("metres")} (${t("accuracy")} ±${msg.accuracy_m.toFixed(0)} ${t("metres")})`;
          break;
        case "challenge":
          challengeId = msg.id;
          challenges.set(msg.id, { code: msg.challenge, shown: false, result: null });
          $("challenge-code").textContent = msg.challenge;
          $("challenge-shown").hidden = true;
          $("challenge-pending").hidden = false;
          $("confirm").disabled = true; // until the site party says it was shown
          $("challenge-result").textContent = "";
          delete $("challenge-result").dataset.result;
          $("challenge-box").hidden = false;
          break;
        case "challenge-shown":
          if (challenges.has(msg.id)) challenges.get(msg.id).shown = true;
          if (msg.id === challengeId) {
            $("challenge-shown").hidden = false;
            $("challenge-pending").hidden = true;
            $("confirm").disabled = Boolean(signedReport);
          }
          break;
        case "challenge-confirmed":
          if (challenges.has(msg.id)) challenges.get(msg.id).result = msg.result;
          $("challenge-result").textContent = msg.result === "confirmed" ? t("confirm") : t("fail");
          $("challenge-result").dataset.result = msg.result;
          break;
        case "report":
          signedReport = decodeReport(msg.token);
          $("report-head").textContent = msg.head;
          $("report-token").value = msg.token;
          $("report").hidden = false;
          lockControls();
          break;
        case "error":
          lastError = msg;
          break;
      }
      render();
    },
    onClose: (code, reason) => {
      if (isRefusal(code) || code === 4000) {
        if (!FINAL.includes(state)) refusal = code === 4000 ? "replaced" : reason;
        render();
        return false;
      }
      if (FINAL.includes(state)) return false;
      state = "reconnecting";
      render();
      return true;
    },
  });
  const video = $("video");
  const size = () => {
    video.dataset.width = String(video.videoWidth);
  };
  video.addEventListener("loadedmetadata", size);
  video.addEventListener("resize", size);
  const act = (message) => {
    lastError = null;
    render();
    link.send(message);
  };
  $("snapshot").addEventListener("click", () => act({ type: "snapshot" }));
  $("challenge").addEventListener("click", () => act({ type: "challenge", instruction: $("instruction").value }));
  $("confirm").addEventListener("click", () =>
    act({ type: "challenge-confirm", id: challengeId, result: "confirmed" }),
  );
  $("reject").addEventListener("click", () => act({ type: "challenge-confirm", id: challengeId, result: "failed" }));
  $("mute").addEventListener("click", () => {
    if (!mic) return;
    const on = devices.microphone !== "on";
    for (const track of mic.getAudioTracks()) track.enabled = on;
    devices.microphone = on ? "on" : "off";
    link.send({ type: "status", ...devices });
    render();
  });
  $("sign").addEventListener("click", () => {
    lastError = precheck();
    render();
    if (lastError === null) openConfirmation();
  });
  $("cancel-sign").addEventListener("click", () => {
    $("confirm-box").hidden = true;
  });
  $("confirm-sign").addEventListener("click", () => {
    $("confirm-box").hidden = true;
    act({
      type: "report",
      verdict: $("verdict").value,
      remarks: $("remarks").value,
      reason: $("guard-reason").value,
      answers: answers(),
    });
  });
  $("abandon").addEventListener("click", () => act({ type: "end", event: "abandon" }));
  setInterval(async () => {
    const quality = await networkQuality(link.pc);
    if (quality !== devices.network) {
      devices.network = quality;
      link.send({ type: "status", ...devices });
    }
  }, 5000);
  applyText();
  render();
}

start();
