// The on-site party's page: recording notice, rear camera and microphone, location,
// challenges acknowledged by hand, and who is connected.
import {
  applyText,
  connect,
  fillList,
  formatTime,
  isRefusal,
  networkQuality,
  refusalText,
  setupLanguage,
  showPresence,
  t,
} from "./survey.js";

const $ = (id) => document.getElementById(id);
const FINAL = ["completed", "abandoned", "converted_to_onsite"];
const FIX_EVERY_MS = 5000; // a still phone reports no new position: repeat the last one
let serverState = "connecting";
let shown = "connecting";
let stream = null;
let facing = "environment";
let lastFix = null;
let welcome = null;
let presence = null;
let refusal = null;
let link = null;
const devices = { camera: "unknown", microphone: "unknown", location: "unknown", network: "unknown" };
let noticeDone;
const noticeAcknowledged = new Promise((resolve) => {
  noticeDone = resolve;
});

function show(key) {
  shown = key;
  const el = $("status");
  el.dataset.state = key;
  el.dataset.t = key;
  el.textContent = t(key);
}

// What the phone says: never "in progress" before an inspector is there.
function render() {
  if (refusal !== null) {
    show("refused");
    $("reason").textContent = refusalText(refusal);
    $("reason").hidden = false;
    return;
  }
  $("after").hidden = !FINAL.includes(serverState); // what happens next, once it ended
  if (FINAL.includes(serverState)) $("after").textContent = t(`after_${serverState}`);
  if (FINAL.includes(serverState)) show(serverState);
  else if (serverState === "live") show(presence && presence.inspector.joined ? "live" : "waiting_inspector");
  else if (serverState === "scheduled") show(devices.camera === "denied" || devices.camera === "absent" ? "site_no_camera" : "waiting");
  else show(serverState);
  if (presence) showPresence($("presence-inspector"), presence.inspector, ["microphone"]);
  const problem = devices.camera === "denied" || devices.camera === "absent" || devices.microphone === "denied";
  $("device-problem").hidden = !problem || FINAL.includes(serverState);
  $("camera-problem").textContent =
    devices.camera === "denied" ? t("camera_denied") : devices.camera === "absent" ? t("camera_absent") : "";
  $("mic-problem").textContent = devices.microphone === "denied" ? t("mic_denied") : "";
  const geo = $("geo");
  const geoKey = { ok: "geo_ok", denied: "geo_denied", absent: "geo_absent" }[devices.location] || "geo_waiting";
  geo.dataset.state = devices.location;
  geo.dataset.t = geoKey;
  geo.textContent = t(geoKey);
  if (welcome) {
    fillList($("case"), [
      ["case_no", welcome.case],
      ["site", welcome.site.address],
      ["window", `${formatTime(welcome.window.start_ms)} – ${formatTime(welcome.window.end_ms)}`],
      ["inspectors", welcome.inspectors.join("、")],
    ]);
  }
  $("mute").dataset.t = devices.microphone === "off" ? "unmute" : "mute";
  $("mute").textContent = t($("mute").dataset.t);
}

function report() {
  if (link) link.send({ type: "status", ...devices });
}

function kind(error) {
  return error && error.name === "NotAllowedError" ? "denied" : "absent";
}

// The camera and microphone, once the recording notice is acknowledged. A denied or
// missing device is reported (to this page and to the inspector), never thrown.
async function media() {
  await noticeAcknowledged;
  if (stream) return stream;
  const video = { facingMode: { ideal: facing }, width: { ideal: 1280 }, height: { ideal: 720 } };
  const tracks = [];
  try {
    tracks.push(...(await navigator.mediaDevices.getUserMedia({ video })).getTracks());
    devices.camera = "on";
  } catch (error) {
    devices.camera = kind(error);
  }
  try {
    tracks.push(...(await navigator.mediaDevices.getUserMedia({ audio: true })).getTracks());
    devices.microphone = "on";
  } catch (error) {
    devices.microphone = kind(error);
  }
  report();
  render();
  if (tracks.length === 0) return null;
  stream = new MediaStream(tracks);
  $("preview").srcObject = stream;
  $("preview").dataset.camera = devices.camera;
  return stream;
}

function stopMedia() {
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  $("preview").srcObject = null;
  $("preview").dataset.camera = "stopped";
  $("camera-stopped").hidden = false;
  $("challenge-box").hidden = true;
  for (const id of ["switch", "mute", "challenge-ack"]) $(id).disabled = true;
}

function sendFix() {
  if (lastFix && serverState === "live") link.send({ type: "geofix", ...lastFix });
}

function watchLocation() {
  if (!navigator.geolocation) {
    devices.location = "absent";
    report();
    render();
    return;
  }
  devices.location = "waiting";
  navigator.geolocation.watchPosition(
    (pos) => {
      lastFix = { lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy: pos.coords.accuracy };
      if (devices.location !== "ok") {
        devices.location = "ok";
        report();
        render();
      }
      sendFix();
    },
    (error) => {
      devices.location = error.code === error.PERMISSION_DENIED ? "denied" : "absent";
      report();
      render();
    },
    { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 },
  );
}

async function switchCamera() {
  if (!stream || !link.pc) return;
  facing = facing === "environment" ? "user" : "environment";
  try {
    const fresh = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: facing } } });
    const [track] = fresh.getVideoTracks();
    const sender = link.pc.getSenders().find((s) => s.track && s.track.kind === "video");
    if (sender) await sender.replaceTrack(track);
    for (const old of stream.getVideoTracks()) {
      old.stop();
      stream.removeTrack(old);
    }
    stream.addTrack(track);
  } catch {
    facing = facing === "environment" ? "user" : "environment";
  }
}

function toggleMute() {
  if (!stream) return;
  const audio = stream.getAudioTracks();
  if (audio.length === 0) return;
  const on = !audio[0].enabled;
  for (const track of audio) track.enabled = on;
  devices.microphone = on ? "on" : "off";
  report();
  render();
}

function start() {
  setupLanguage(render);
  let started = false;
  link = connect("site", media, {
    onTrack: (event) => {
      if (event.track.kind === "audio") $("voice").srcObject = event.streams[0] || new MediaStream([event.track]);
    },
    onMessage: (msg) => {
      if (msg.type === "welcome") {
        welcome = msg;
        serverState = msg.state;
        if (msg.notice) noticeDone();
        else $("notice").hidden = false;
        report();
        if (!started) {
          started = true;
          watchLocation();
        }
      } else if (msg.type === "state") {
        serverState = msg.state;
        if (FINAL.includes(msg.state)) {
          stopMedia();
          $("notice").hidden = true; // nothing more is recorded: nothing to acknowledge
        }
        sendFix();
      } else if (msg.type === "presence") {
        presence = msg;
      } else if (msg.type === "challenge") {
        $("challenge-code").textContent = msg.challenge;
        $("challenge-box").dataset.id = msg.id;
        $("challenge-box").hidden = false;
        $("challenge-ack").hidden = false;
        $("challenge-acked").hidden = true;
      }
      render();
    },
    onClose: (code, reason) => {
      if (isRefusal(code) || code === 4000) {
        if (!FINAL.includes(serverState)) refusal = code === 4000 ? "replaced" : reason;
        stopMedia();
        render();
        return false;
      }
      if (FINAL.includes(serverState)) return false;
      show("reconnecting");
      return true;
    },
  });
  $("notice-ack").addEventListener("click", () => {
    link.send({ type: "notice-ack" });
    $("notice").hidden = true;
    noticeDone();
  });
  $("challenge-ack").addEventListener("click", () => {
    link.send({ type: "challenge-shown", id: $("challenge-box").dataset.id });
    $("challenge-ack").hidden = true;
    $("challenge-acked").hidden = false;
  });
  $("retry").addEventListener("click", () => location.reload());
  $("switch").addEventListener("click", switchCamera);
  $("mute").addEventListener("click", toggleMute);
  setInterval(sendFix, FIX_EVERY_MS);
  setInterval(async () => {
    const quality = await networkQuality(link.pc);
    if (quality !== devices.network) {
      devices.network = quality;
      report();
    }
  }, FIX_EVERY_MS);
  applyText();
  render();
}

start();
