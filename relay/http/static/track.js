// tongban case tracking page: look up a case by number + access code (or a signed
// link in the URL fragment), render the applicant view, follow it live over WebSocket.
"use strict";
(function () {
  const TEXT = {
    zh: {
      title: "办件进度查询", caseNumber: "办件编号", accessCode: "查询码", lookup: "查询",
      deadline: "办理期限", missing: "请补正以下材料：", licence: "证照编号", verify: "核验",
      timeline: "办理进程", live: "进度实时更新", rate: "服务评价（好差评）", good: "好评",
      average: "中评", poor: "差评", comment: "意见（可选）", submitRating: "提交评价",
      thanks: "感谢您的评价。", complain: "办不成事反映", complaintText: "请描述遇到的问题",
      submitComplaint: "提交反映", other: "English", none: "—", paused: "补正期间暂停计时",
      stopped: "已停止计时", notFound: "办件编号或查询码不正确：请核对受理回执上的编号和查询码；查询码遗失的，请到受理窗口重新获取。",
      throttled: "查询过于频繁，请稍后再试。", failed: "暂时无法查询，请稍后再试。",
      stepFailed: "提交未成功，请稍后再试；如仍不成功，请联系办理机关。",
      linkExpired: "此查询链接已失效或已过期：请输入办件编号和查询码查询（见受理回执）。",
      answered: "答复", respondBy: "答复期限", workingDays: "个工作日",
      provisional: "（按暂定节假日安排计算）",
    },
    en: {
      title: "Case progress", caseNumber: "Case number", accessCode: "Access code", lookup: "Look up",
      deadline: "Deadline", missing: "Please supply the following:", licence: "Licence number",
      verify: "verify", timeline: "Steps", live: "Updates live", rate: "Rate the service",
      good: "Good", average: "Average", poor: "Poor", comment: "Comment (optional)",
      submitRating: "Send rating", thanks: "Thank you for your rating.",
      complain: "Can't get it done? Tell us", complaintText: "What went wrong?",
      submitComplaint: "Send", other: "中文", none: "—", paused: "clock paused during correction",
      stopped: "clock stopped", notFound: "Case number or access code is wrong: check them on your receipt; if you lost the code, ask at the counter where you applied for a new one.",
      throttled: "Too many attempts. Please try again later.",
      failed: "The case cannot be shown right now. Please try again later.",
      linkExpired: "This tracking link no longer works (expired or not valid): enter the case number and access code from your receipt.",
      stepFailed: "This did not go through. Please try again later; if it still fails, contact the office handling your case.",
      answered: "Answer", respondBy: "Answer due", workingDays: "working days",
      provisional: "(counted on the provisional holiday arrangement)",
    },
  };
  function savedLang() {  // a browser that blocks site data throws on any access
    try { return localStorage.getItem("tongban.lang"); } catch (e) { return null; }
  }
  // the language asked for in the link, else the one this browser chose last
  const asked = new URLSearchParams(location.search).get("lang");
  let lang = (asked || savedLang()) === "en" ? "en" : "zh";
  let link = null;
  let socket = null;
  let lastView = null;
  const $ = (id) => document.getElementById(id);

  function t(key) { return TEXT[lang][key] || key; }

  // The choice kept for the next page (verify, a reload) and in this page's address.
  function rememberLang(value) {
    try { localStorage.setItem("tongban.lang", value); } catch (e) { /* private mode */ }
    const url = new URL(location.href);
    url.searchParams.set("lang", value);
    history.replaceState(null, "", url);
  }

  function applyStatic() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = t("title") + " · tongban";
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("lang-switch").textContent = t("other");
  }

  function showError(key) {
    $("error").textContent = t(key);
    $("error").hidden = false;
  }

  function when(iso) {
    const d = new Date(iso);
    return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: "Asia/Shanghai" });
  }

  function detailText(details) {
    const parts = [];
    for (const [key, value] of Object.entries(details || {})) {
      if (key === "missing" || key === "materials" || key === "supplied") {
        parts.push(value.join("、"));
      } else {
        parts.push(String(value));
      }
    }
    return parts.join(" · ");
  }

  function render(view) {
    lastView = view;
    $("lookup").hidden = true;
    $("error").hidden = true;
    $("case-view").hidden = false;
    $("case-id").textContent = view.case;
    $("offices").textContent = view.offices.receiving.name + " → " + view.offices.handling.name;
    $("state").textContent = view.state_label;
    $("state").dataset.state = view.state;
    let deadline = view.deadline || t("none");
    if (view.clock === "paused") deadline = t("paused");
    if (view.clock === "stopped") deadline = t("stopped");
    $("deadline").textContent = deadline;
    $("provisional").hidden = !(view.provisional && view.clock === "running");
    const missing = $("missing");
    missing.replaceChildren(...view.missing.map((m) => {
      const li = document.createElement("li"); li.textContent = m; return li;
    }));
    $("missing-box").hidden = view.missing.length === 0;
    $("licence-line").hidden = !view.licence_number;
    $("licence").textContent = view.licence_number || "";
    if (view.licence) $("verify-link").href = "/verify?lang=" + lang + "#token=" + encodeURIComponent(view.licence);
    const items = view.steps.map((step, i) => {
      const li = document.createElement("li");
      li.dataset.event = step.event;
      if (step.void) li.classList.add("void");
      if (i === view.steps.length - 1) li.classList.add("current");
      const title = document.createElement("div");
      title.className = "label";
      title.textContent = step.label;
      const meta = document.createElement("div");
      meta.className = "when";
      meta.textContent = when(step.at) + " · " + step.office.name;
      li.append(title, meta);
      const text = detailText(step.details);
      if (text) {
        const d = document.createElement("div"); d.className = "details"; d.textContent = text;
        li.append(d);
      }
      return li;
    });
    $("timeline").replaceChildren(...items);
    $("rating-box").hidden = !view.can_rate;
    $("rated-box").hidden = !view.rating;
    $("complaint-box").hidden = !view.can_complain;
    $("complaints").replaceChildren(...view.complaints.map((c) => {
      const li = document.createElement("li");
      li.textContent = when(c.at) + " · " + c.text +
        (c.answer ? " — " + t("answered") + ": " + c.answer
                  : " — " + t("respondBy") + ": " + (c.respond_by || t("none")) +
                    (c.respond_by && c.provisional ? " " + t("provisional") : ""));
      return li;
    }));
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ lang }, body)),
    });
    const data = await response.json().catch(() => ({}));
    return { response, data };
  }

  function follow() {
    if (socket) socket.close();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + location.host + "/public/v1/track/ws?lang=" + lang +
      "&link=" + encodeURIComponent(link);
    socket = new WebSocket(url);
    socket.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type === "view") render(data.view);
    };
    socket.onclose = () => { socket = null; setTimeout(() => { if (!socket && link) follow(); }, 3000); };
  }

  async function lookup(event) {
    event.preventDefault();
    const code = $("code").value.trim();
    const { response, data } = await post("/public/v1/track",
      SHORT ? { short: SHORT, code } : { case: $("case").value.trim(), code });
    if (response.status === 429) return showError("throttled");
    if (!response.ok) return showError(response.status === 404 ? "notFound" : "failed");
    link = data.link;
    render(data);
    follow();
  }

  // A link from an SMS or a receipt: shown at once, then followed live; one that no
  // longer opens the case (expired, or not a link of this office) says so and asks
  // for the case number and access code instead of retrying for ever.
  async function openLink(token) {
    const response = await fetch("/public/v1/track?lang=" + lang + "&link=" + encodeURIComponent(token));
    if (response.status === 429) return showError("throttled");
    if (response.status === 404 || response.status === 400) return showError("linkExpired");
    if (!response.ok) return showError("failed");
    link = token;
    render(await response.json());
    follow();
  }

  async function applicantStep(path, body) {
    const { response, data } = await post(path, Object.assign({ link }, body));
    if (response.status === 429) return showError("throttled");
    if (!response.ok) return showError("stepFailed");
    $("error").hidden = true;
    render(data);
    return true;
  }

  // A short link (/t/AB3K7Q, sent by SMS) names the case; the access code is asked for.
  const SHORT = (/^\/t\/([A-Za-z0-9]{1,16})$/.exec(location.pathname) || [])[1] || null;

  document.addEventListener("DOMContentLoaded", () => {
    applyStatic();
    if (SHORT) {
      $("case").required = false;
      $("case").hidden = true;
      document.querySelector("label[for=case]").hidden = true;
    }
    $("lookup-form").addEventListener("submit", lookup);
    $("lang-switch").addEventListener("click", () => {
      lang = lang === "zh" ? "en" : "zh";
      rememberLang(lang);
      applyStatic();
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ lang }));
      else if (link) openLink(link);  // the server words the steps: ask again in this language
      else if (lastView) render(lastView);
    });
    $("rating-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const rating = document.querySelector("input[name=rating]:checked").value;
      applicantStep("/public/v1/track/rating", { rating, comment: $("comment").value.trim() });
    });
    $("complaint-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const sent = applicantStep("/public/v1/track/complaint", { text: $("complaint-text").value.trim() });
      sent.then((ok) => { if (ok) $("complaint-text").value = ""; });  // kept when it failed
    });
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.get("link")) openLink(fragment.get("link"));
  });
})();
