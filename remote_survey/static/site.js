// The on-site party's page: rear camera and microphone, location, challenges.
import { applyText, connect, isRefusal, setupLanguage, t } from "./survey.js";

const $ = (id) => document.getElementById(id);
let state = "connecting";
let stream = null;
let geoKey = "geo_waiting";
let lastFix = null;
const FIX_EVERY_MS = 5000; // a still phone reports no new position: repeat the last one

function sendFix(link) {
  if (lastFix && state === "live") link.send({ type: "geofix", ...lastFix });
}

function show(key) {
  state = key;
  $("status").dataset.state = key;
  $("status").dataset.t = key;
  $("status").textContent = t(key);
}

async function media() {
  if (!stream) {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: true,
    });
    $("preview").srcObject = stream;
  }
  return stream;
}

function watchLocation(link) {
  if (!navigator.geolocation) return;
  navigator.geolocation.watchPosition(
    (pos) => {
      geoKey = "geo_ok";
      $("geo").dataset.t = geoKey;
      $("geo").textContent = t(geoKey);
      lastFix = { lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy: pos.coords.accuracy };
      sendFix(link);
    },
    () => {
      geoKey = "geo_denied";
      $("geo").dataset.t = geoKey;
      $("geo").textContent = t(geoKey);
    },
    { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 },
  );
}

function start() {
  setupLanguage();
  let watching = false;
  const link = connect("site", media, {
    onTrack: (event) => {
      if (event.track.kind === "audio") $("voice").srcObject = event.streams[0] || new MediaStream([event.track]);
    },
    onMessage: (msg) => {
      if (msg.type === "welcome") {
        $("address").textContent = msg.site.address;
        show(msg.state === "scheduled" ? "waiting" : msg.state);
        if (!watching) {
          watching = true;
          watchLocation(link);
        }
      } else if (msg.type === "state") {
        show(msg.state);
        sendFix(link);
      } else if (msg.type === "challenge") {
        $("challenge-code").textContent = msg.challenge;
        $("challenge-box").hidden = false;
        // report "shown" once the code is actually painted
        requestAnimationFrame(() =>
          requestAnimationFrame(() => link.send({ type: "challenge-shown", id: msg.id })),
        );
      }
    },
    onClose: (code) => {
      if (isRefusal(code) || code === 4000) {
        show(state === "completed" || state === "abandoned" ? state : "refused");
        return false;
      }
      if (["completed", "abandoned", "converted_to_onsite"].includes(state)) return false;
      show("reconnecting");
      return true;
    },
  });
  setInterval(() => sendFix(link), FIX_EVERY_MS);
  applyText();
}

start();
