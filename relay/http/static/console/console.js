// tongban staff console: one page, hash routes, zh by default with an English switch.
// Talks only to this node's staff API with the console session (cookie; X-CSRF-Token on
// every change, from GET /console/v1/me); without a session the sign-in page (/login)
// takes over. Live updates come as Server-Sent Events read through fetch.
import { ALERT_NEXT_ZH, PROBLEMS_ZH, STATUS_ZH, TEXT } from "/console/i18n.js";

const API = "/staff/v1";
let lang = localStorage.getItem("tongban.lang") === "en" ? "en" : "zh";
let me = null; // {office, name, display_name, roles, actions, csrf}
let current = null; // {name, arg}: the view shown
let filters = { state: "", matter: "", partner: "", mine: false, turn: false, overdue: false };
let queueCache = null;
let caseCache = null;

const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[lang][key];
const pick = (obj) => (obj ? (lang === "zh" ? obj.name_zh : obj.name_en) : "");

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", {
    timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit",
  });
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

function fail(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

// A refusal in the page's language: the English detail on the English page, a Chinese
// sentence with the next step (by the problem's reason, code or status) on the Chinese one.
function problemText(status, problem) {
  if (lang === "en") return (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
  const p = problem || {};
  return PROBLEMS_ZH[p.reason] || PROBLEMS_ZH[p.code]
    || STATUS_ZH[status] || STATUS_ZH[status >= 500 ? 500 : 400];
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem || {};
  }
}

function toSignIn() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.hash)}`);
}

function unsafeHeaders(extra) {
  return Object.assign(me && me.csrf ? { "X-CSRF-Token": me.csrf } : {}, extra || {});
}

const may = (action) => Boolean(me && me.actions.includes(action));

async function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = Object.assign({ Accept: "application/json" },
    method === "GET" ? {} : unsafeHeaders(), options.headers || {});
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const base = options.base === undefined ? API : options.base;
  const resp = await fetch(base + path, { method, headers, body: options.body });
  if (resp.status === 401) {
    toSignIn();
    throw new ApiError(401, null);
  }
  const type = resp.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await resp.json() : null;
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

// -- labels -------------------------------------------------------------------------

function clockText(clock) {
  const bits = [];
  if (clock.state === "paused") bits.push(t("paused"));
  else if (clock.state === "stopped") bits.push(t("stopped"));
  else if (clock.state === "not_started") bits.push(t("notStarted"));
  else if (clock.state === "unknown") bits.push(t("unknownClock"));
  else {
    bits.push(t("daysLeft")(clock.remaining_working_days));
    if (clock.deadline) bits.push(t("dueOn")(clock.deadline));
  }
  let text = bits.join(" · ");
  if (clock.provisional) text += t("provisional");
  return text;
}

function clockChip(clock) {
  return h("span", { class: "chip clock", "data-colour": clock.colour, "data-clock": clock.state },
    `${t("colour")[clock.colour]} · ${clockText(clock)}`);
}

// A delivery reason in words: by itself, by its part before ":", or by its family
// (http-503, refused-<code>, attachment-<code>).
// A packet's action in the page's language: a case step, or what a packet carries
// (status-update, rating, complaint...), never a reason's label.
function actionName(action) {
  return t("events")[action] || t("packetActions")[action] || t("packetActions").other;
}

function reasonText(code) {
  const reasons = t("reasons");
  const base = String(code || "").split(":")[0];
  const family = /^(http|refused|attachment)-/.exec(base);
  return reasons[base] || (family && reasons[`${family[1]}-*`]) || reasons.other;
}

const SETTLED_AS_FAILED = ["dead", "rejected"];
// Case states after which nobody has a step to take (no one's turn)
const ENDED = ["concluded", "rejected", "withdrawn"];

// A step's button: its own words where they differ from the timeline's
function actionLabel(event) {
  return t("actionLabels")[event] || t("events")[event];
}

function detailValue(name, value) {
  if (Array.isArray(value)) return value.join("、");
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).map(([k, v]) => `${(t("applicantFields")[k] || k)}: ${v}`).join("; ");
  }
  if (name === "licence") return null; // a signed token: shown elsewhere
  if (name === "report" && /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/.test(String(value))) return null; // sealed
  if (name === "verdict") return t("report").verdicts[value] || t("report").verdicts.other;
  if (name === "complaint") return t("complaintNumber")(value);
  return t("values")[value] || String(value);
}

// -- sign-out ---------------------------------------------------------------------------

async function signOut() {
  stopLive();
  try {
    await api("/console/v1/session", { base: "", method: "DELETE" });
  } catch (err) { /* signed out already */ }
  location.assign("/login");
}

// -- live updates ---------------------------------------------------------------------

let liveAbort = null;
let liveTimer = null;

function stopLive() {
  if (liveAbort) liveAbort.abort();
  liveAbort = null;
  clearTimeout(liveTimer);
  setLive(false);
}

function setLive(on) {
  const el = $("live");
  el.dataset.live = on ? "on" : "off";
  el.textContent = on ? t("live") : (me ? t("offline") : "");
}

async function startLive() {
  stopLive();
  const controller = new AbortController();
  liveAbort = controller;
  try {
    const resp = await fetch(`${API}/console/events`, {
      headers: { Accept: "text/event-stream" }, signal: controller.signal,
    });
    if (resp.status === 401) { toSignIn(); return; }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    setLive(true);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (/^event: changed$/m.test(block)) refresh();
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  if (liveAbort !== controller) return;
  setLive(false);
  liveTimer = setTimeout(startLive, 2000);
}

// One refresh at a time: changes announced while one runs are shown by one more after it.
let refreshing = null;
let refreshAgain = false;
function refresh() {
  if (!current || !(current.name === "queue" || current.name === "case")) return;
  if (refreshing) { refreshAgain = true; return; }
  refreshing = show(current.name, current.arg, true).finally(() => {
    refreshing = null;
    if (refreshAgain) { refreshAgain = false; refresh(); }
  });
}

// -- work queue ------------------------------------------------------------------------

async function showQueue(view) {
  const q = new URLSearchParams();
  for (const k of ["matter", "partner"]) if (filters[k]) q.set(k, filters[k]);
  for (const k of ["mine", "turn", "overdue"]) if (filters[k]) q.set(k, "1");
  if (filters.state) q.set("state", filters.state);
  const [data, matters] = await Promise.all([api(`/console/queue?${q}`), mattersOnce()]);
  queueCache = data;
  const partners = new Map();
  for (const c of data.cases) {
    const office = c.me === "receiving" ? c.handling_office : c.receiving_office;
    partners.set(office.id, office);
  }
  for (const m of matters) for (const o of m.handling) partners.set(o.id, o);
  const matterNames = new Map(matters.map((m) => [m.matter, m]));
  for (const c of data.cases) matterNames.set(c.matter, c.matter_names);

  const counts = h("ul", { class: "counts", id: "counts", "aria-label": t("state") },
    h("li", {}, h("button", { type: "button", "data-state": "", "aria-pressed": String(!filters.state),
      onclick: () => { filters.state = ""; show("queue"); } }, `${t("all")} `, h("span", { class: "n", text: data.total }))),
    Object.entries(data.counts).filter(([, n]) => n > 0).map(([state, n]) =>
      h("li", {}, h("button", { type: "button", "data-state": state, "aria-pressed": String(filters.state === state),
        onclick: () => { filters.state = state; show("queue"); } },
      `${t("states")[state]} `, h("span", { class: "n", text: n })))));

  const select = (id, label, key, options) => h("div", {},
    h("label", { for: id, text: label }),
    h("select", { id, onchange: (ev) => { filters[key] = ev.target.value; show("queue"); } },
      options.map(([value, text]) => h("option", { value, selected: filters[key] === value }, text))));
  const check = (id, label, key) => h("label", { class: "inline", for: id },
    h("input", { id, type: "checkbox", checked: filters[key],
      onchange: (ev) => { filters[key] = ev.target.checked; show("queue"); } }), label);
  const bar = h("div", { class: "filters" },
    select("filter-matter", t("filterMatter"), "matter",
      [["", t("anyMatter")], ...[...matterNames].map(([code, names]) => [code, pick(names)])]),
    select("filter-partner", t("filterPartner"), "partner",
      [["", t("anyPartner")], ...[...partners.values()].map((o) => [o.id, pick(o)])]),
    h("div", {}, check("filter-mine", t("filterMine"), "mine"), check("filter-turn", t("filterTurn"), "turn"),
      check("filter-overdue", t("filterOverdue"), "overdue")));

  const rows = data.cases;  // the selected state's (the server filters), nearest deadline first
  const table = h("table", { id: "queue-table" },
    h("caption", { class: "muted", text: t("queueTitle") }),
    h("thead", {}, h("tr", {}, [t("caseNumber"), t("matter"), t("partner"), t("state"), t("deadline")]
      .map((x) => h("th", { scope: "col", text: x })))),
    h("tbody", {}, rows.map((c) => {
      const partner = c.me === "receiving" ? c.handling_office : c.receiving_office;
      return h("tr", { "data-case": c.case, "data-state": c.state, "data-colour": c.clock.colour },
        h("td", {}, h("a", { href: `#/case/${encodeURIComponent(c.case)}`, text: c.case })),
        h("td", { text: pick(c.matter_names) }),
        h("td", { text: pick(partner) }),
        h("td", { class: "state" }, t("states")[c.state], h("br"),
          h("span", { class: "muted", text: ENDED.includes(c.state) ? t("ended") : c.our_turn ? t("ourTurn") : t("theirTurn") }),
          c.open_complaints ? h("div", { class: "error", text: t("openComplaints")(c.open_complaints) }) : null),
        h("td", {}, clockChip(c.clock)));
    })));
  const more = data.shown > rows.length
    ? h("p", { id: "queue-more", class: "muted", text: t("queueMore")(rows.length, data.shown) }) : null;
  view.append(h("h1", { text: t("queueTitle") }), counts, bar,
    rows.length ? table : h("p", { id: "queue-empty", class: "muted", text: t("noCases") }), ...(more ? [more] : []));
}

let mattersPromise = null;
function mattersOnce() {
  if (!mattersPromise) mattersPromise = api("/console/matters").then((d) => d.matters).catch(() => { mattersPromise = null; return []; });
  return mattersPromise;
}

// -- case page ------------------------------------------------------------------------

async function showCase(view, caseId) {
  const c = await api(`/console/cases/${encodeURIComponent(caseId)}`);
  caseCache = c;
  const section = h("div", { id: "case-view", "data-case": c.case, "data-state": c.state });
  section.append(h("p", { class: "no-print" }, h("a", { href: "#/queue", text: t("back") })));
  section.append(h("h1", {}, `${pick(c.matter_names)} · ${c.case}`));
  if (c.refused.length || c.incoming_refused.length) {
    // ours the partner refused, and the partner's this office could not take: each
    // under its own heading, with what to do next
    const incoming = t("incomingRefused");
    section.append(h("div", { class: "refused", id: "refused", role: "alert" },
      c.refused.length ? [h("h2", { text: t("refusedTitle") }),
        h("ul", {}, c.refused.map((r) => h("li", { "data-reason": r.reason },
          `${t("refusedStep")(actionName(r.action))} — ${reasonText(r.reason)} `,
          h("button", { type: "button", class: "secondary", onclick: () => resend(r.packet_id), text: t("resend") }))))] : null,
      c.incoming_refused.length ? [h("h2", { id: "incoming-refused", text: incoming.title }),
        h("ul", {}, c.incoming_refused.map((r) => h("li", { "data-reason": r.reason },
          `${incoming.reasons[String(r.reason).split(":")[0]] || incoming.reasons.other}${incoming.next}`)))] : null));
  }
  const facts = h("dl", { class: "facts" },
    h("dt", { text: t("state") }), h("dd", { id: "case-state", "data-state": c.state, text: t("states")[c.state] }),
    h("dt", { text: t("deadline") }), h("dd", {}, clockChip(c.clock)),
    h("dt", { text: t("receivingOffice") }), h("dd", { text: pick(c.receiving_office) }),
    h("dt", { text: t("handlingOffice") }), h("dd", { text: pick(c.handling_office) }),
    Object.entries(c.applicant || {}).map(([k, v]) => [h("dt", { text: t("applicantFields")[k] || t("applicant") }),
      h("dd", { "data-field": k, text: k === "id_type" ? (t("idTypes")[v] || t("idTypes").other) : String(v) })]),
    c.rating ? [h("dt", { text: t("details").rating }), h("dd", { id: "rating" },
      t("values")[c.rating.rating] || "", c.rating.comment ? ` · ${c.rating.comment}` : "")] : null,
    c.licence_number ? [h("dt", { text: t("licenceNumber") }), h("dd", {},
      h("span", { id: "licence-number", text: c.licence_number }), " ",
      h("a", { href: `#/licence/${encodeURIComponent(c.case)}`, text: t("printView") }))] : null);
  const checklist = h("ul", { class: "checklist", id: "checklist" }, c.checklist.map((m) =>
    h("li", { "data-status": m.status },
      h("span", {}, pick(m), m.required ? "" : t("notInStandard")),
      h("span", { class: "mark", text: t("material")[m.status] }))));
  const timeline = h("ol", { class: "timeline", id: "timeline" }, c.timeline.map((e) =>
    h("li", { "data-event": e.event, class: [e.ours ? "ours" : "", e.applied ? "" : "void"].join(" ").trim() },
      h("div", {}, h("strong", { class: "label", text: t("events")[e.event] }), e.applied ? "" : t("voidStep")),
      h("div", { class: "when" }, `${when(e.at)} · ${pick(e.origin === "receiving" ? c.receiving_office : c.handling_office)}`),
      Object.entries(e.details).map(([k, v]) => {
        const text = detailValue(k, v);
        return text === null || k === "application" ? null : h("div", {}, `${t("details")[k] || t("details").text}: ${text}`);
      }))));
  const attachments = c.attachments.length ? h("ul", { id: "attachments", class: "plain" }, c.attachments.map((a) => {
    const viewer = h("div", { class: "viewer" });
    return h("li", { "data-digest": a.plain_digest || a.digest },
      `${a.name || (a.plain_digest || a.digest).slice(0, 12)} (${Math.ceil((a.plain_size || a.size) / 1024)} KiB) `,
      INLINE_TYPES.has(a.media_type)
        ? h("button", { type: "button", class: "secondary", "data-view": a.media_type,
          onclick: () => viewInline(a, viewer), text: t("viewInline") }) : null, " ",
      h("button", { type: "button", class: "secondary", onclick: () => download(a), text: t("download") }), viewer);
  }))
    : h("p", { class: "muted", text: t("noAttachments") });
  const actions = h("div", { class: "actions", id: "actions" }, c.actions.length
    ? c.actions.map((a) => h("button", { type: "button", "data-event": a.event, onclick: () => openAction(c, a),
      text: actionLabel(a.event) }))
    : h("p", { class: "muted", text: t("noActions") }));
  const complaints = c.complaints.length ? h("section", { class: "card", id: "complaints" },
    h("h2", { text: t("complaintsTitle") }),
    h("ul", {}, c.complaints.map((x) => h("li", { "data-complaint": x.seq }, `${when(x.at)}: ${x.text} — `,
      x.answer ? `${t("answered")}: ${x.answer}` : [h("strong", { class: "error", text: t("unanswered") }), " ", clockChip(x.clock)]))))
    : null;
  const survey = c.surveyor === c.me && ["survey_requested", "survey_reported"].includes(c.state)
    ? h("section", { class: "card no-print", id: "survey" }, h("h2", { text: t("surveyTitle") }))
    : null;
  if (survey) surveyPanel(survey, c);
  const reports = (c.survey_reports || []).length ? surveyReports(c) : null;
  section.append(h("div", { class: "case-grid" },
    h("div", {},
      h("section", { class: "card" }, facts, accessCodeButton(c)),
      h("section", { class: "card no-print" }, h("h2", { text: t("actionsTitle") }), actions),
      survey,
      reports,
      complaints,
      h("section", { class: "card" }, h("h2", { text: t("timelineTitle") }), timeline)),
    h("div", {},
      h("section", { class: "card" }, h("h2", { text: t("checklistTitle") }), checklist),
      h("section", { class: "card" }, h("h2", { text: t("attachmentsTitle") }), attachments))));
  view.append(section);
}

// -- surveys: schedule from the case page, hand out the links, send the signed report -------

async function qrImage(text, alt) {
  const resp = await fetch(`${API}/console/qr`, { method: "POST",
    headers: unsafeHeaders({ "Content-Type": "application/json" }), body: JSON.stringify({ text }) });
  return resp.ok ? h("img", { class: "qr", alt, src: URL.createObjectURL(await resp.blob()) }) : null;
}

function linkRow(url, label, withQr) {
  const row = h("li", { "data-link": label },
    h("strong", { text: label }), " ",
    h("input", { type: "text", readonly: true, value: url, "aria-label": label }),
    h("button", { type: "button", class: "secondary",
      onclick: () => navigator.clipboard.writeText(url).then(() => notice(t("copied"))), text: t("copy") }),
    " ", h("a", { href: url, target: "_blank", rel: "noopener", text: t("openLink") }));
  if (withQr) qrImage(url, label).then((img) => img && row.append(img));
  return row;
}

// An applicant who lost the access code: a new one, shown once (the old one stops working).
function accessCodeButton(c) {
  if (c.me !== "receiving" || !may("receive")) return null;
  const box = h("div", { id: "access-code-box", class: "no-print" });
  const button = h("button", { type: "button", class: "secondary", id: "access-code-new", text: t("newAccessCode"),
    onclick: async () => {
      if (!window.confirm(t("newAccessCodeQuestion"))) return;
      try {
        const issued = await api(`/console/cases/${encodeURIComponent(c.case)}/access-code`, { method: "POST", json: {} });
        box.replaceChildren(h("dl", { class: "facts" },
          h("dt", { text: t("accessCode") }), h("dd", { class: "code", id: "access-code-issued", text: issued.access_code }),
          h("dt", { text: t("trackingLink") }), h("dd", {}, h("a", { href: issued.tracking_url, target: "_blank",
            rel: "noopener", text: t("openLink") }))),
          h("p", { class: "muted", text: t("newAccessCodeShown") }));
      } catch (err) { fail(t("error") + err.message); }
    } });
  box.append(button);
  return box;
}

async function surveyPanel(panel, c) {
  if (c.me === "handling" && c.state === "survey_requested") {
    // a remote survey's report goes to the other office: there is none to send it to
    panel.append(h("p", { id: "survey-onsite-only", class: "muted", text: t("surveyOnsiteOnly") }));
    return;
  }
  // a case's surveys are SV-<case>, then SV-<case>-2, -3...: one abandoned (the window
  // passed, the site never came) is followed by another; the page follows the latest
  const attempt = (n) => (n === 1 ? `SV-${c.case}` : `SV-${c.case}-${n}`);
  let status = null;
  let session = attempt(1);  // the latest survey, or the one to schedule when none
  let next = attempt(1);  // the one to schedule after an abandoned one
  for (let n = 1; n <= 20; n += 1) {
    try {
      status = await api(`/surveys/${encodeURIComponent(attempt(n))}`);
      session = attempt(n);
      next = attempt(n + 1);
    } catch (err) {
      if (err.status === 403) {
        // nothing failed: surveys are the inspector's (a person's roles decide what they see)
        panel.append(h("p", { id: "survey-not-mine", class: "muted", text: t("surveyNeedsInspector") }));
        return;
      }
      if (err.status !== 404) { panel.append(h("p", { class: "error", text: t("error") + err.message })); return; }
      break;
    }
  }
  const reschedule = status && status.state === "abandoned" && c.state === "survey_requested" && may("survey");
  if (reschedule) {
    panel.append(h("p", { id: "survey-state", "data-state": status.state },
      `${t("surveyState")}: ${t("surveyStates")[status.state] || t("surveyStates").other}`),
      h("p", { class: "muted", id: "survey-again", text: t("surveyAgain") }));
    status = null;  // the form below schedules the next one
    session = next;
  }
  if (status) {
    panel.append(h("p", { id: "survey-state", "data-state": status.state },
      `${t("surveyState")}: ${t("surveyStates")[status.state] || t("surveyStates").other}`));
    if (["scheduled", "live", "interrupted"].includes(status.state) && may("survey")) {
      // the links are shown once, at scheduling: new ones for whoever lost theirs
      const again = h("button", { type: "button", id: "survey-links-again", class: "secondary", onclick: async () => {
        try {
          const issued = await api(`/surveys/${encodeURIComponent(session)}/links`, { method: "POST", json: {} });
          again.replaceWith(h("ul", { id: "survey-links", class: "plain" }, issued.links.map((l) =>
            linkRow(c.public_base + l.path, t("surveyRoles")[l.role] || l.person, l.role === "site"))));
        } catch (err) { fail(t("error") + err.message); }
      }, text: t("linksAgain") });
      // the office's way out of a survey nobody can finish (the inspector's page has its own)
      const stop = h("button", { type: "button", id: "survey-abandon", class: "secondary", onclick: async () => {
        if (!window.confirm(t("abandonQuestion"))) return;
        try {
          await api(`/surveys/${encodeURIComponent(session)}/abandon`, { method: "POST", json: {} });
          notice(t("doneStep"));
          show("case", c.case, true);
        } catch (err) { fail(t("error") + err.message); }
      }, text: t("abandonSurvey") });
      panel.append(h("p", {}, again, " ", stop));
    }
    if (status.report) {
      panel.append(h("p", { class: "ok", text: t("reportSigned") }));
      if (status.state === "converted_to_onsite") {
        panel.append(h("p", { id: "survey-onsite", class: "muted", text: t("reportOnsite") }));
      } else if (c.state === "survey_requested" && may("survey")) {
        panel.append(h("button", { type: "button", id: "survey-send", onclick: async () => {
          try {
            await api(`/surveys/${encodeURIComponent(session)}/send`, { method: "POST", json: {} });
            notice(t("doneStep"));
            show("case", c.case, true);
          } catch (err) { fail(t("error") + err.message); }
        }, text: t("sendReport") }));
      }
    }
    return;
  }
  if (!may("survey") || c.state !== "survey_requested") {
    panel.append(h("p", { class: "muted", text: t("surveyNotScheduled") }));
    return;
  }
  const start = new Date(Date.now() + 3600_000);
  const local = new Date(start.getTime() - start.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const form = h("form", { id: "survey-form" },
    field("sv-start", t("surveyStart"), h("input", { id: "sv-start", type: "datetime-local", value: local, required: true })),
    field("sv-hours", t("surveyHours"), h("input", { id: "sv-hours", type: "number", min: 1, max: 72, value: 4, required: true })),
    field("sv-address", t("siteAddress"), h("input", { id: "sv-address", type: "text", required: true, value: c.applicant.address || "" })),
    field("sv-lat", t("latitude"), h("input", { id: "sv-lat", type: "number", step: "0.000001", required: true })),
    field("sv-lon", t("longitude"), h("input", { id: "sv-lon", type: "number", step: "0.000001", required: true })),
    field("sv-site", t("siteParty"), h("input", { id: "sv-site", type: "text", required: true, value: c.applicant.name || "" })),
    // the agreed survey checklist, one point per line; the inspector adds points when the
    // agreement names none for this matter (a survey needs at least one)
    field("sv-checklist", t("surveyChecklist"), h("textarea", { id: "sv-checklist", rows: 3, required: true },
      c.survey_checklist.join("\n"))),
    h("p", { class: "buttons" }, h("button", { type: "submit", text: t("scheduleSurvey") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const begin = new Date($("sv-start").value);
    const plan = {
      session, case: c.case, matter: c.matter,
      surveying_office: c.me === "receiving" ? c.receiving : c.handling,
      requesting_office: c.handling,
      window: { start_ms: begin.getTime(), end_ms: begin.getTime() + Number($("sv-hours").value) * 3600_000 },
      site: { address: $("sv-address").value, lat_e7: Math.round(Number($("sv-lat").value) * 1e7),
        lon_e7: Math.round(Number($("sv-lon").value) * 1e7) },
      inspectors: [{ id: me.name, name: me.display_name || me.name }],
      site_party: { id: "site", name: $("sv-site").value },
      observers: [],
      checklist: $("sv-checklist").value.split("\n").map((x) => x.trim()).filter(Boolean)
        .map((text, i) => ({ item: `c${i + 1}`, text })),
    };
    try {
      const scheduled = await api("/surveys", { method: "POST", json: plan });
      const links = h("ul", { id: "survey-links", class: "plain" }, scheduled.links.map((l) =>
        linkRow(c.public_base + l.path, t("surveyRoles")[l.role] || l.person, l.role === "site")));
      form.replaceWith(h("div", {}, h("p", { text: t("surveyScheduled") }), links));
    } catch (err) { fail(t("error") + err.message); }
  });
  panel.append(form);
}

// -- the signed survey report, readable, with its snapshots as thumbnails -------------------

function surveyReports(c) {
  const r = t("report");
  const section = h("section", { class: "card", id: "survey-report" }, h("h2", { text: r.title }));
  for (const rep of c.survey_reports) {
    const shots = new Map(rep.snapshots.map((s) => [s.sha256, s]));
    const thumb = (s) => (may("view-surveys") && s.thumbnail
      ? h("a", { href: s.thumbnail, target: "_blank", rel: "noopener" },
        h("img", { class: "thumb", src: s.thumbnail, loading: "lazy", "data-sha256": s.sha256,
          alt: r.snapshotAlt(s.by, when(s.at)) }))
      : null);
    const geo = rep.geolocation;
    section.append(h("div", { class: "report", "data-session": rep.session, "data-verdict": rep.verdict },
      h("dl", { class: "facts" },
        h("dt", { text: r.verdict }), h("dd", { class: "verdict", text: r.verdicts[rep.verdict] || r.verdicts.other }),
        h("dt", { text: r.span }), h("dd", { text: `${when(rep.start)} – ${when(rep.end)}` }),
        h("dt", { text: r.inspectors }), h("dd", { text: rep.inspectors.join("、") }),
        h("dt", { text: t("siteParty") }), h("dd", { text: rep.site_party }),
        h("dt", { text: t("siteAddress") }), h("dd", { text: rep.site_address }),
        h("dt", { text: r.location }), h("dd", { text: r.locationText(geo.fixes, geo.within_permille) }),
        h("dt", { text: r.challenges }), h("dd", { text: r.challengeText(rep.challenges) }),
        h("dt", { text: r.interruptions }), h("dd", { text: String(rep.interruptions) }),
        rep.guard ? [h("dt", { text: r.guard }), h("dd", { class: "error" },
          rep.guard.missing.map((g) => r.guards[g] || g).join("、"), ` — ${rep.guard.reason}`)] : null,
        rep.remarks ? [h("dt", { text: r.remarks }), h("dd", { text: rep.remarks })] : null),
      h("h3", { text: r.checklist }),
      h("ol", { class: "report-checklist" }, rep.checklist.map((item) => h("li", { "data-answer": item.answer },
        h("strong", { text: item.text }), ` — ${r.answers[item.answer] || ""}`,
        item.note ? h("div", { class: "muted", text: item.note }) : null,
        h("div", { class: "thumbs" }, item.snapshots.map((sha) => (shots.has(sha) ? thumb(shots.get(sha)) : null)))))),
      h("h3", { text: r.snapshots }),
      may("view-surveys")
        ? h("div", { class: "thumbs", id: `thumbs-${rep.session}` }, rep.snapshots.map(thumb))
        : h("p", { class: "muted", text: r.snapshotsNeedPermission })));
  }
  return section;
}

// -- attachments: images and PDFs shown in the page, anything else downloaded ----------------

const INLINE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"]);

async function attachmentBlob(a) {
  const digest = a.plain_digest || a.digest;
  const resp = await fetch(`${API}/console/attachments/${digest}?name=${encodeURIComponent(a.name || "")}&case=${encodeURIComponent(caseCache ? caseCache.case : "")}`);
  if (!resp.ok) throw new ApiError(resp.status, null);
  // typed by what was recorded at upload, and only for the types shown inline (never SVG/HTML)
  const type = INLINE_TYPES.has(a.media_type) ? a.media_type : "application/octet-stream";
  return new Blob([await resp.arrayBuffer()], { type });
}

async function viewInline(a, viewer) {
  if (viewer.childElementCount) { viewer.replaceChildren(); return; } // a second click closes it
  try {
    const url = URL.createObjectURL(await attachmentBlob(a));
    const label = a.name || t("attachmentsTitle");
    viewer.replaceChildren(a.media_type === "application/pdf"
      ? h("iframe", { src: url, title: label, class: "pdf", "data-viewer": "pdf" })
      : h("img", { src: url, alt: label, class: "inline-image", "data-viewer": "image" }));
  } catch (err) { fail(t("error") + err.message); }
}

async function download(a) {
  const digest = a.plain_digest || a.digest;
  const resp = await fetch(`${API}/console/attachments/${digest}?name=${encodeURIComponent(a.name || "")}&case=${encodeURIComponent(caseCache ? caseCache.case : "")}`);
  if (!resp.ok) { fail(t("error")); return; }
  const url = URL.createObjectURL(await resp.blob());
  const link = h("a", { href: url, download: a.name || digest.slice(0, 12) });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function resend(packetId) {
  try {
    await api(`/console/outbox/${encodeURIComponent(packetId)}/resend`, { method: "POST" });
    notice(t("doneStep"));
    refresh();
  } catch (err) { fail(t("error") + err.message); }
}

// -- the step forms (each confirmed in a dialog) ------------------------------------------

// A file chooser in the page's language (the browser's own button speaks the browser's).
function filePicker(id, label, multiple, attrs) {
  const names = h("span", { class: "muted", id: `${id}-names`, text: t("noFile") });
  const input = h("input", Object.assign({ type: "file", id, class: "visually-hidden", multiple,
    onchange: () => { names.textContent = [...input.files].map((f) => f.name).join("、") || t("noFile"); } }, attrs || {}));
  return h("span", { class: "file-picker" }, input,
    h("label", { for: id, class: "button secondary" }, t("chooseFile"), h("span", { class: "visually-hidden" }, ` ${label}`)),
    " ", names);
}

function field(id, label, input) {
  return h("div", {}, h("label", { for: id, text: label }), input);
}

function checks(name, items, checked) {
  return h("fieldset", {}, items.map((item, i) => h("label", { class: "inline", for: `${name}-${i}` },
    h("input", { type: "checkbox", id: `${name}-${i}`, name, value: item.value, checked: checked(item) }), item.text)));
}

function radios(name, legend, items) {
  return h("fieldset", {}, h("legend", { text: legend }), items.map((item, i) =>
    h("label", { class: "inline", for: `${name}-${i}` },
      h("input", { type: "radio", id: `${name}-${i}`, name, value: item.value, checked: i === 0, required: true }), item.text)));
}

function actionFields(c, a) {
  const f = t("fields");
  const materials = c.checklist.map((m) => ({ value: m.name_zh, text: pick(m), status: m.status }));
  switch (a.event) {
    case "request-correction":
      return [h("p", { text: f.missing }), checks("missing", materials, (m) => m.status === "missing"),
        field("f-other", f.otherMissing, h("textarea", { id: "f-other", rows: 2, maxlength: 2000 })),
        field("f-reason", f.reasonOptional, h("input", { id: "f-reason", type: "text", maxlength: 2000 }))];
    case "reject":
    case "withdraw":
      return [field("f-reason", a.event === "reject" ? f.reason : f.reasonOptional,
        h("input", { id: "f-reason", type: "text", required: a.event === "reject", maxlength: 2000 }))];
    case "supplement":
      return [h("p", { text: f.supplied }), checks("supplied", c.missing.map((m) => ({ value: m, text: m })), () => true),
        h("p", {}, h("span", { class: "muted", text: `${f.files}: ` }), filePicker("f-files", f.files, true)),
        h("progress", { id: "f-progress", max: 1, value: 0, hidden: true, "aria-label": t("uploading") })];
    case "request-survey":
      return [radios("surveyor", f.surveyor, a.surveyors.map((s) => ({ value: s, text: t("surveyors")[s] })))];
    case "survey-report":
      return [radios("outcome", f.outcome, [{ value: "pass", text: f.outcomePass }, { value: "fail", text: f.outcomeFail }]),
        field("f-report", f.findings, h("textarea", { id: "f-report", rows: 3, maxlength: 2000 }))];
    case "decide": {
      // a denial must say why (the node refuses one without): the reason is required then
      const reason = h("input", { id: "f-reason", type: "text", maxlength: 2000 });
      const decision = radios("decision", f.decision, [{ value: "approve", text: f.approve }, { value: "deny", text: f.deny }]);
      decision.addEventListener("change", (e) => { reason.required = e.target.value === "deny"; });
      return [decision, field("f-reason", f.reasonIfDenied, reason)];
    }
    case "issue-licence":
      return [field("f-holder-name", f.holder_name, h("input", { id: "f-holder-name", type: "text", required: true, value: c.applicant.name || "" })),
        field("f-holder-id", f.holder_id, h("input", { id: "f-holder-id", type: "text", required: true, value: c.applicant.id_number || "" })),
        field("f-scope", f.scope, h("input", { id: "f-scope", type: "text", required: true, value: pick(c.matter_names) })),
        field("f-days", f.valid_days, h("input", { id: "f-days", type: "number", min: 1, value: 1825, required: true }))];
    case "deliver":
      return [radios("method", f.method, Object.entries(t("methods")).map(([value, text]) => ({ value, text })))];
    case "answer-complaint":
      return [field("f-complaint", f.complaint, h("select", { id: "f-complaint" },
        a.complaints.map((x) => h("option", { value: x.seq }, x.text)))),
      field("f-answer", f.answer, h("textarea", { id: "f-answer", rows: 3, required: true, maxlength: 2000 }))];
    default:
      return [];
  }
}

function collect(c, a) {
  const val = (id) => ($(id) ? $(id).value.trim() : "");
  const checked = (name) => [...document.querySelectorAll(`input[name=${name}]:checked`)].map((x) => x.value);
  const radio = (name) => (document.querySelector(`input[name=${name}]:checked`) || {}).value;
  const details = {};
  const reason = val("f-reason");
  switch (a.event) {
    case "request-correction":
      details.missing = [...checked("missing"), ...val("f-other").split("\n").map((x) => x.trim()).filter(Boolean)];
      if (reason) details.reason = reason;
      break;
    case "reject": case "withdraw":
      if (reason) details.reason = reason;
      break;
    case "supplement":
      details.supplied = checked("supplied");
      break;
    case "request-survey":
      details.surveyor = radio("surveyor");
      break;
    case "survey-report":
      details.outcome = radio("outcome");
      if (val("f-report")) details.report = val("f-report");
      break;
    case "decide":
      details.decision = radio("decision");
      if (reason) details.reason = reason;
      break;
    case "deliver":
      details.method = radio("method");
      break;
    case "answer-complaint":
      details.complaint = Number(val("f-complaint"));
      details.answer = val("f-answer");
      break;
    default:
  }
  return details;
}

function openAction(c, a) {
  const dialog = $("action-dialog");
  const label = actionLabel(a.event);
  dialog.dataset.event = a.event;
  $("action-title").textContent = label;
  $("action-question").textContent = t("confirmQuestion")(label);
  $("action-fields").replaceChildren(...actionFields(c, a));
  $("action-cancel").textContent = t("cancel");
  $("action-confirm").textContent = t("confirm");
  $("action-cancel").onclick = () => dialog.close();
  $("action-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("action-confirm").disabled = true;
    try {
      if (a.event === "issue-licence") {
        await api(`/console/cases/${encodeURIComponent(c.case)}/licence`, { method: "POST", json: {
          holder_name: $("f-holder-name").value, holder_id: $("f-holder-id").value,
          scope: $("f-scope").value, valid_days: Number($("f-days").value) } });
      } else {
        const files = $("f-files") ? [...$("f-files").files] : [];
        const attachments = await uploadAll(files, $("f-progress"));
        await api(`/console/cases/${encodeURIComponent(c.case)}/steps`, { method: "POST",
          json: { event: a.event, details: collect(c, a), attachments } });
      }
      dialog.close();
      notice(`${label}: ${t("doneStep")}`);
      fail("");
      await show("case", c.case, true);
    } catch (err) {
      // the dialog stays open with what was typed: the person corrects it and confirms
      // again (closing it lost a long reason to one wrong character)
      $("action-error").textContent = t("error") + err.message;
      $("action-error").hidden = false;
    } finally {
      $("action-confirm").disabled = false;
    }
  };
  $("action-error").hidden = true;
  $("action-error").textContent = "";
  dialog.showModal();
}

// A reason for a step outside the case flow (suspend, reinstate, revoke), confirmed in
// the same dialog as the case steps; resolves to the reason, or null when cancelled.
function askReason(label) {
  const dialog = $("action-dialog");
  $("action-title").textContent = label;
  $("action-question").textContent = t("confirmQuestion")(label);
  $("action-fields").replaceChildren(field("f-reason", t("fields").reason,
    h("input", { id: "f-reason", type: "text", required: true, maxlength: 500 })));
  $("action-cancel").textContent = t("cancel");
  $("action-confirm").textContent = t("confirm");
  return new Promise((resolve) => {
    $("action-cancel").onclick = () => { dialog.close(); resolve(null); };
    $("action-form").onsubmit = (ev) => {
      ev.preventDefault();
      dialog.close();
      resolve($("f-reason").value.trim());
    };
    $("action-error").hidden = true;
    dialog.showModal();
  });
}

// -- resumable uploads with a progress bar ------------------------------------------------

const CHUNK = 256 * 1024;

async function sha256hex(file) {
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function upload(file, onProgress) {
  const digest = await sha256hex(file);
  const path = `${API}/attachments/${digest}`;
  const head = await fetch(path, { method: "HEAD" });
  let offset = head.ok ? Number(head.headers.get("Upload-Offset") || 0) : 0;
  onProgress(offset);
  while (offset < file.size) {
    const end = Math.min(offset + CHUNK, file.size);
    const resp = await fetch(`${path}?name=${encodeURIComponent(file.name)}`, {
      method: "PUT",
      headers: unsafeHeaders({ "Content-Range": `bytes ${offset}-${end - 1}/${file.size}`,
        "Content-Type": file.type || "application/octet-stream" }),
      body: file.slice(offset, end),
    });
    if (!resp.ok) {
      // resume from where the server says it is (another tab, a lost answer)
      const again = await fetch(path, { method: "HEAD" });
      const at = again.ok ? Number(again.headers.get("Upload-Offset") || 0) : -1;
      if (at <= offset) throw new ApiError(resp.status, await resp.json().catch(() => null));
      offset = at;
    } else {
      offset = Number(resp.headers.get("Upload-Offset") || end);
    }
    onProgress(offset);
  }
  return digest;
}

async function uploadAll(files, bar) {
  if (!files.length) return [];
  const total = files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  if (bar) { bar.hidden = false; bar.max = total; bar.value = 0; }
  const digests = [];
  for (const file of files) {
    digests.push(await upload(file, (offset) => { if (bar) bar.value = done + offset; }));
    done += file.size;
  }
  return digests;
}

// -- hand-in (收件) ------------------------------------------------------------------------

async function showHandIn(view) {
  const matters = await mattersOnce();
  const form = h("form", { id: "handin-form", class: "card" });
  const detail = h("div", { id: "handin-detail" });
  const matterSelect = h("select", { id: "handin-matter", required: true,
    onchange: () => fill() },
  h("option", { value: "", text: t("chooseMatter") }),
  matters.map((m, i) => h("option", { value: String(i) }, pick(m))));
  function fill() {
    const m = matters[Number(matterSelect.value)];
    if (!m || matterSelect.value === "") { detail.replaceChildren(); return; }
    detail.replaceChildren(h("div", {},
      h("p", { class: "muted" }, t("timeLimit")(m.time_limit_working_days), m.survey_required ? ` · ${t("surveyRequired")}` : ""),
      field("handin-handling", t("handlingOffice2"), h("select", { id: "handin-handling" },
        m.handling.map((o) => h("option", { value: o.id }, pick(o))))),
      // only the data categories the agreement lists are asked for (and sent)
      m.categories.includes("applicant-identity") ? [
        h("h2", { text: t("applicant") }),
        field("applicant-name", t("applicantFields").name, h("input", { id: "applicant-name", type: "text", required: true, maxlength: 200 })),
        field("applicant-id_type", t("applicantFields").id_type, h("select", { id: "applicant-id_type" },
          Object.entries(t("idTypes")).map(([value, text]) => h("option", { value }, text)))),
        field("applicant-id_number", t("applicantFields").id_number, h("input", { id: "applicant-id_number", type: "text", required: true, pattern: "[0-9A-Za-z\\-]{4,40}" })),
        field("applicant-phone", t("applicantFields").phone, h("input", { id: "applicant-phone", type: "tel", pattern: "[0-9+ \\-]{5,20}" }))] : null,
      m.categories.includes("business-premises")
        ? field("applicant-address", t("applicantFields").address, h("input", { id: "applicant-address", type: "text", maxlength: 200 }))
        : null,
      h("h2", { text: t("materialsHanded") }),
      h("ul", { class: "checklist", id: "handin-materials" }, m.materials.map((mat, i) => h("li", {},
        h("label", { class: "inline", for: `mat-${i}` },
          h("input", { type: "checkbox", id: `mat-${i}`, name: "material", value: mat.name_zh }), pick(mat)),
        filePicker(`file-${i}`, t("fileFor")(pick(mat)), false, { "data-material": i })))),
      h("progress", { id: "handin-progress", max: 1, value: 0, hidden: true, "aria-label": t("uploading") })));
    for (const input of detail.querySelectorAll("input[type=file][data-material]")) {
      // a scan of a material means it was handed in
      input.addEventListener("change", () => { if (input.files.length) $(`mat-${input.dataset.material}`).checked = true; });
    }
  }
  form.append(h("h1", { text: t("handInTitle") }), field("handin-matter", t("matter"), matterSelect), detail,
    h("p", { class: "buttons" }, h("button", { type: "submit", id: "handin-submit", text: t("handIn") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const m = matters[Number(matterSelect.value)];
    const pickers = [...detail.querySelectorAll("input[type=file][data-material]")];
    const files = pickers.flatMap((x) => [...x.files]);
    $("handin-submit").disabled = true;
    try {
      const attachments = await uploadAll(files, $("handin-progress"));
      const digestOf = new Map(); // material index -> digest of its scan
      let next = 0;
      for (const picker of pickers) for (const _ of picker.files) digestOf.set(picker.dataset.material, attachments[next++]);
      const handed = [...detail.querySelectorAll("input[name=material]:checked")];
      const application = {};
      const value = (id) => ($(id) ? $(id).value.trim() : "");
      if (m.categories.includes("applicant-identity")) {
        const identity = { name: value("applicant-name"), id_type: value("applicant-id_type"), id_number: value("applicant-id_number") };
        if (value("applicant-phone")) identity.phone = value("applicant-phone");
        application["applicant-identity"] = identity;
      }
      if (m.categories.includes("business-premises") && value("applicant-address")) {
        application["business-premises"] = { address: value("applicant-address") };
      }
      if (m.categories.includes("case-materials") && handed.length) {
        application["case-materials"] = handed.map((x) => {
          const digest = digestOf.get(x.id.slice(4));
          return digest ? { material: x.value, digest } : { material: x.value };
        });
      }
      const opened = await api("/console/cases", { method: "POST", json: {
        matter: m.matter, handling: $("handin-handling").value,
        application: Object.keys(application).length ? application : undefined,
        materials: handed.map((x) => x.value), attachments } });
      view.replaceChildren(h("section", { class: "card", id: "handin-done", "data-case": opened.case },
        h("h1", { text: t("handedIn") }),
        h("dl", { class: "facts" },
          h("dt", { text: t("caseNumber") }), h("dd", { id: "handin-case", text: opened.case }),
          h("dt", { text: t("accessCode") }), h("dd", { class: "code", id: "handin-code", text: opened.access_code }),
          h("dt", { text: t("trackingLink") }), h("dd", {}, h("a", { href: opened.tracking_url, target: "_blank",
            rel: "noopener", id: "handin-tracking", text: t("openLink") }))),
        h("p", { class: "buttons" },
          h("a", { href: `#/case/${encodeURIComponent(opened.case)}`, id: "handin-open", text: t("openCase") }), " ",
          h("a", { href: "#/hand-in", onclick: () => show("hand-in"), text: t("newHandIn") }))));
    } catch (err) {
      fail(t("error") + err.message);
      $("handin-submit").disabled = false;
    }
  });
  view.append(form);
}

// -- alerts, outbox/inbox, agreements, licence print view ------------------------------------

async function showAlerts(view) {
  const data = await api("/console/alerts");
  const ack = async (a) => {
    try {
      await api(`/console/alerts/${encodeURIComponent(a.id)}/ack`, { method: "POST",
        json: { note: ($(`note-${a.id}`) || {}).value || "" } });
      notice(t("acknowledgedDone"));
      show("alerts", "", true);
    } catch (err) { fail(t("error") + err.message); }
  };
  // the partner an alert is about, by name (the parties of the agreements in force)
  const names = new Map();
  if (data.alerts.some((a) => a.peer)) {
    const agreements = await api("/console/agreements").catch(() => ({ agreements: [] }));
    for (const ag of agreements.agreements) for (const p of ag.parties) names.set(p.id, p);
  }
  const nextStep = (code) => ALERT_NEXT_ZH[code] || (code.startsWith("audit-") && ALERT_NEXT_ZH["audit-*"]) || ALERT_NEXT_ZH.other;
  view.append(h("h1", { text: t("alertsTitle") }), data.alerts.length
    ? h("ul", { id: "alerts", class: "plain" }, data.alerts.map((a) => h("li", { class: "card", "data-alert": a.id, "data-severity": a.severity },
      h("h2", { text: `${t("severity")[a.severity] || ""} · ${a.title[lang]}` }),
      h("div", { class: "when", text: when(a.at) }),
      lang === "en" ? h("div", { text: a.detail }) : h("div", { class: "next", text: nextStep(a.code) }),
      a.peer ? h("div", { class: "peer", text: `${t("partnerOffice")}: ${names.has(a.peer) ? pick(names.get(a.peer)) : a.peer}` }) : null,
      a.case_id ? h("a", { href: `#/case/${encodeURIComponent(a.case_id)}`, text: a.case_id }) : null,
      a.acknowledged
        ? h("p", { class: "acknowledged", text: t("acknowledgedBy")(a.acknowledged.person, when(a.acknowledged.at)) })
        : h("p", { class: "buttons" },
          h("label", { for: `note-${a.id}`, class: "inline" }, t("ackNote"),
            h("input", { id: `note-${a.id}`, type: "text", maxlength: 500 })),
          h("button", { type: "button", "data-ack": a.id, onclick: () => ack(a), text: t("acknowledge") })))))
    : h("p", { class: "muted", text: t("noAlerts") }));
}

const RECENT = 100; // packets each way on the outbox page, newest first
async function showOutbox(view) {
  // the latest packets each way, and every one refused or dead (what needs a person):
  // never the whole history the node ever exchanged
  const [latest, dead, rejected, inbox] = await Promise.all([
    api(`/outbox?order=desc&limit=${RECENT}`), api("/outbox?state=dead&order=desc&limit=500"),
    api("/outbox?state=rejected&order=desc&limit=500"), api(`/inbox?order=desc&limit=${RECENT}`)]);
  const seen = new Set();
  const out = { items: [...dead.items, ...rejected.items, ...latest.items].filter((i) =>
    !seen.has(i.packet.packet_id) && seen.add(i.packet.packet_id)) };
  // partners by name: the offices we hand cases to, and every party of our agreements
  // (a handling office hands none, and receives from offices it does not hand to)
  const offices = new Map();
  for (const m of await mattersOnce()) for (const o of m.handling) offices.set(o.id, o);
  const agreements = await api("/console/agreements").catch(() => ({ agreements: [] }));
  for (const a of agreements.agreements) for (const p of a.parties) if (!offices.has(p.id)) offices.set(p.id, p);
  const officeName = (id) => (offices.get(id) ? pick(offices.get(id)) : id);
  const byPeer = new Map();
  for (const item of out.items) {
    const peer = item.packet.to;
    if (!byPeer.has(peer)) byPeer.set(peer, []);
    byPeer.get(peer).push(item);
  }
  view.append(h("h1", { text: t("outboxTitle") }), h("p", { id: "outbox-recent", class: "muted", text: t("outboxRecent")(RECENT) }));
  for (const [peer, items] of byPeer) {
    view.append(h("section", { class: "card", "data-peer": peer }, h("h2", { text: officeName(peer) }),
      h("table", {}, h("thead", {}, h("tr", {}, [t("caseNumber"), t("packetContent"), t("state"), ""].map((x) => h("th", { scope: "col", text: x })))),
        h("tbody", {}, items.map((i) => h("tr", { "data-state": i.state },
          h("td", {}, h("a", { href: `#/case/${encodeURIComponent(i.packet.case_id)}`, text: i.packet.case_id })),
          h("td", { text: actionName(i.packet.action) }),
          h("td", {}, t("outState")[i.state] || "",
            i.reason ? h("div", { class: SETTLED_AS_FAILED.includes(i.state) ? "error" : "muted", text: reasonText(i.reason) }) : null,
            h("div", { class: "muted", text: t("attempts")(i.attempts) })),
          h("td", {}, SETTLED_AS_FAILED.includes(i.state)
            ? h("button", { type: "button", class: "secondary", onclick: () => resend(i.packet.packet_id), text: t("resend") }) : null)))))));
  }
  view.append(h("section", { class: "card" }, h("h2", { text: t("inboxTitle") }),
    h("ul", {}, inbox.items.map((i) => h("li", {},
      h("a", { href: `#/case/${encodeURIComponent(i.packet.case_id)}`, text: i.packet.case_id }),
      ` · ${actionName(i.packet.action)} · ${officeName(i.packet.from)} · ${when(i.received_at)}`)))));
}

async function showAgreements(view) {
  const data = await api("/console/agreements");
  view.append(h("h1", { text: t("agreementsTitle") }));
  for (const a of data.agreements) {
    view.append(h("section", { class: "card", "data-agreement": a.id },
      h("h2", { text: lang === "zh" ? a.title_zh : a.title_en }),
      h("p", {}, `${t("validity")}: ${when(a.valid_from)} – ${when(a.valid_until)}`),
      h("h3", { text: t("parties") }), h("ul", {}, a.parties.map((p) => h("li", { text: pick(p) }))),
      a.matters.map((m) => h("div", {}, h("h3", {}, `${pick(m)} · ${t("timeLimit")(m.time_limit_working_days)}${m.survey_required ? ` · ${t("surveyRequired")}` : ""}`),
        h("ul", {}, m.materials.map((x) => h("li", { text: pick(x) })))))));
  }
}

// The delivery's error in the page's language (the technical text stays in the title).
function webhookError(error, w) {
  if (lang === "en") return error;
  const status = /^HTTP (\d{3})/.exec(error);
  if (status) return w.errors.status(status[1]);
  if (/^TimeoutError|timeout/i.test(error)) return w.errors.timeout;
  if (/Connect|refused|OSError/i.test(error)) return w.errors.connect;
  return w.errors.other;
}

// The office's own systems: webhook deliveries per target, the last error, retry parked.
async function showWebhooks(view) {
  const status = await api("/integration/webhooks");  // troubled deliveries name their event
  const w = t("webhooks");
  const retry = async (target) => {
    try {
      const done = await api("/integration/webhooks/retry", { method: "POST", json: { target } });
      notice(w.retried(done.retried));
      show("webhooks", "", true);
    } catch (err) { fail(t("error") + err.message); }
  };
  view.append(h("h1", { text: w.title }), h("p", { class: "muted", text: w.intro }));
  if (!status.targets.length) view.append(h("p", { class: "muted", id: "webhooks-none", text: w.none }));
  status.targets.forEach((target, i) => {
    const failing = target.troubled.filter((d) => d.error);
    const last = failing.length ? failing[failing.length - 1] : null;
    view.append(h("section", { class: "card", "data-target": target.target, id: `webhook-${i}` },
      h("h2", { text: target.target }),
      h("dl", { class: "facts" },
        h("dt", { text: w.pending }), h("dd", { "data-count": "pending", text: String(target.pending) }),
        h("dt", { text: w.delivered }), h("dd", { "data-count": "delivered", text: String(target.delivered) }),
        h("dt", { text: w.parked }), h("dd", { "data-count": "parked", class: target.parked ? "error" : null, text: String(target.parked) }),
        h("dt", { text: w.lastError }), h("dd", { class: "last-error", title: last ? last.error : null },
          last ? webhookError(last.error, w) : w.noError)),
      target.troubled.length ? h("table", {},
        h("caption", { class: "muted", text: w.troubled }),
        h("thead", {}, h("tr", {}, [w.event, t("caseNumber"), t("state"), w.attempts].map((x) => h("th", { scope: "col", text: x })))),
        h("tbody", {}, target.troubled.map((d) => {
          return h("tr", { "data-state": d.state },
            h("td", { text: w.types[d.type] || w.types.other }),
            h("td", {}, d.case ? h("a", { href: `#/case/${encodeURIComponent(d.case)}`, text: d.case }) : ""),
            h("td", { text: w.states[d.state] || "" }),
            h("td", { text: String(d.attempts) }));
        }))) : null,
      target.parked && may("integration")
        ? h("p", { class: "buttons" }, h("button", { type: "button", "data-retry": target.target,
          onclick: () => retry(target.target), text: w.retry })) : null));
  });
}

function licenceFacts(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part + "===".slice((part.length + 3) % 4)), (ch) => ch.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) { return {}; }
}

async function showLicence(view, caseId) {
  const c = await api(`/console/cases/${encodeURIComponent(caseId)}`);
  const claims = licenceFacts(c.licence || "");
  const subject = (claims.vc && claims.vc.credentialSubject) || {};
  const resp = await fetch(`${API}/console/cases/${encodeURIComponent(caseId)}/licence.svg`);
  const img = resp.ok ? h("img", { id: "licence-qr", alt: `${t("licenceNumber")} ${c.licence_number}`, src: URL.createObjectURL(await resp.blob()) }) : null;
  const status = async (purpose, value, label) => {
    const reason = await askReason(label);
    if (reason === null) return;
    try {
      await api(`/console/licences/${encodeURIComponent(c.licence_number)}/status`, { method: "POST",
        json: { purpose, value, reason } });
      notice(t("statusChanged"));
    } catch (err) { fail(t("error") + err.message); }
  };
  const mine = c.me === "handling" && may("licence");
  view.append(h("section", { class: "card licence-print", id: "licence-print" },
    h("p", { class: "no-print" }, h("a", { href: `#/case/${encodeURIComponent(caseId)}`, text: t("back") })),
    h("h1", { text: `${t("licencePrintTitle")} · ${pick(c.matter_names)}` }),
    h("dl", { class: "facts" },
      h("dt", { text: t("licenceNumber") }), h("dd", { text: c.licence_number }),
      h("dt", { text: t("holder") }), h("dd", { text: subject.n || c.applicant.name || "" }),
      h("dt", { text: t("scopeLabel") }), h("dd", { text: subject.sc || "" }),
      h("dt", { text: t("issuedBy") }), h("dd", { text: pick(c.handling_office) }),
      h("dt", { text: t("validUntil") }), h("dd", { text: claims.exp ? when(new Date(claims.exp * 1000).toISOString()) : "" })),
    img,
    h("p", { class: "buttons no-print" },
      h("button", { type: "button", onclick: () => window.print(), text: t("print") }),
      mine ? h("button", { type: "button", id: "licence-suspend", class: "secondary", onclick: () => status("suspension", true, t("suspend")), text: t("suspend") }) : null,
      mine ? h("button", { type: "button", id: "licence-reinstate", class: "secondary", onclick: () => status("suspension", false, t("reinstate")), text: t("reinstate") }) : null,
      mine ? h("button", { type: "button", id: "licence-revoke", class: "danger", onclick: () => status("revocation", true, t("revoke")), text: t("revoke") }) : null)));
}

// -- shell ------------------------------------------------------------------------------

const VIEWS = { queue: showQueue, case: showCase, "hand-in": showHandIn, alerts: showAlerts,
  outbox: showOutbox, agreements: showAgreements, licence: showLicence, webhooks: showWebhooks };
let showing = 0;

async function show(name, arg, quiet) {
  current = { name, arg };
  const ticket = ++showing;
  const view = h("section", { id: "view" });
  if (!quiet) { notice(""); fail(""); }
  try {
    await VIEWS[name](view, arg);
  } catch (err) {
    if (err.status === 401) return;
    view.append(h("p", { class: "error", text: t("error") + err.message }));
  }
  if (ticket !== showing) return; // a later view won the race
  const focused = document.activeElement && document.activeElement.id;
  $("view").replaceWith(view);
  if (focused && $(focused) && quiet) $(focused).focus();
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.body.dataset.view = name;
}

function route() {
  const hash = decodeURIComponent(location.hash.slice(2));
  const [name, ...rest] = hash.split("/");
  if (!me) return;
  show(VIEWS[name] ? name : "queue", rest.join("/"));
}

function render() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = `${t("title")} · tongban`;
  $("title").textContent = t("title");
  $("lang-switch").textContent = t("other");
  $("nav").setAttribute("aria-label", t("title"));
  for (const [id, key] of [["nav-queue", "navQueue"], ["nav-hand-in", "navHandIn"], ["nav-alerts", "navAlerts"],
    ["nav-outbox", "navOutbox"], ["nav-agreements", "navAgreements"], ["nav-webhooks", "navWebhooks"]]) $(id).textContent = t(key);
  $("sign-out").textContent = t("signOut");
  $("nav").hidden = !me;
  $("sign-out").hidden = !me;
  $("nav-hand-in").hidden = !may("receive");
  $("nav-webhooks").hidden = !may("read");
  $("office").textContent = me ? pick(me.office) : "";
  $("whoami").textContent = me ? t("signedInAs")(me.display_name || me.name) : "";
  setLive($("live").dataset.live === "on");
}

async function start() {
  try {
    const [person, office] = await Promise.all([
      api("/console/v1/me", { base: "" }), api("/console/me")]);
    me = Object.assign({}, person, { office: office.office });
  } catch (err) {
    if (err.status !== 401) fail(t("error") + err.message);
    return;
  }
  render();
  startLive();
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  $("lang-switch").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("tongban.lang", lang);
    render();
    if (me && current) show(current.name, current.arg, true);
  });
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  render();
  start();
});
