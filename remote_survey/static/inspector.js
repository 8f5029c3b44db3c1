// The inspector's page (also the observer's, with the controls hidden).
import { applyText, connect, isRefusal, linkParams, setupLanguage, t } from "./survey.js";

const $ = (id) => document.getElementById(id);
const role = linkParams().get("role") || "inspector";
const snapshots = [];
let checklist = [];
let state = "connecting";
let challengeId = null;

function show(key) {
  state = key;
  const el = $("status");
  el.dataset.state = key;
  el.dataset.t = key;
  el.textContent = t(key);
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
    for (const [value, key] of [["pass", "pass"], ["fail", "fail_item"], ["note", "note"]]) {
      const option = document.createElement("option");
      option.value = value;
      option.dataset.t = key;
      option.textContent = t(key);
      answer.append(option);
    }
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
      label.append(box, ` #${n + 1}`);
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

function start() {
  setupLanguage();
  if (role !== "inspector") for (const el of document.querySelectorAll(".inspector-only")) el.hidden = true;
  const media = async () =>
    role === "inspector" ? navigator.mediaDevices.getUserMedia({ audio: true, video: false }) : null;
  const link = connect(role, media, {
    onTrack: (event) => {
      const target = event.track.kind === "video" ? $("video") : $("sound");
      target.srcObject = new MediaStream([event.track]);
    },
    onMessage: (msg) => {
      switch (msg.type) {
        case "welcome":
          $("address").textContent = msg.site.address;
          checklist = msg.checklist;
          renderChecklist();
          show(msg.state);
          break;
        case "state":
          show(msg.state);
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
          li.textContent = `${msg.name}  sha256 ${msg.sha256.slice(0, 16)}…`;
          $("snapshots").append(li);
          renderLinks();
          break;
        }
        case "geofix":
          $("distance").dataset.m = msg.distance_m.toFixed(1);
          $("distance").textContent =
            `${msg.distance_m.toFixed(1)} ${t("metres")} (${t("accuracy")} ±${msg.accuracy_m.toFixed(0)} ${t("metres")})`;
          break;
        case "challenge":
          challengeId = msg.id;
          $("challenge-code").textContent = msg.challenge;
          $("challenge-shown").hidden = true;
          $("challenge-result").textContent = "";
          $("challenge-box").hidden = false;
          break;
        case "challenge-shown":
          if (msg.id === challengeId) $("challenge-shown").hidden = false;
          break;
        case "challenge-confirmed":
          $("challenge-result").textContent = msg.result === "confirmed" ? t("confirm") : t("fail");
          $("challenge-result").dataset.result = msg.result;
          break;
        case "report":
          $("report-head").textContent = msg.head;
          $("report-token").value = msg.token;
          $("report").hidden = false;
          break;
        case "error":
          $("error").textContent = `${t("error")}: ${msg.code} — ${msg.message}`;
          break;
      }
    },
    onClose: (code) => {
      if (isRefusal(code) || code === 4000) {
        show("refused");
        return false;
      }
      show("reconnecting");
      return true;
    },
  });
  const video = $("video");
  const size = () => {
    video.dataset.width = String(video.videoWidth);
  };
  video.addEventListener("loadedmetadata", size);
  video.addEventListener("resize", size);
  $("snapshot").addEventListener("click", () => link.send({ type: "snapshot" }));
  $("challenge").addEventListener("click", () =>
    link.send({ type: "challenge", instruction: $("instruction").value }),
  );
  $("confirm").addEventListener("click", () =>
    link.send({ type: "challenge-confirm", id: challengeId, result: "confirmed" }),
  );
  $("reject").addEventListener("click", () =>
    link.send({ type: "challenge-confirm", id: challengeId, result: "failed" }),
  );
  $("sign").addEventListener("click", () => {
    $("error").textContent = "";
    link.send({ type: "report", verdict: $("verdict").value, remarks: $("remarks").value, answers: answers() });
  });
  $("abandon").addEventListener("click", () => link.send({ type: "end", event: "abandon" }));
  applyText();
}

start();
