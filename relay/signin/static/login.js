// The console sign-in page: POST /console/v1/session, then go to ?next= (same site only).
"use strict";

const TEXT = {
  zh: {
    "signin-failed": "用户名或密码错误。",
    "totp-required": "请输入身份验证器应用中的 6 位动态验证码。",
    "account-locked": (m) => `登录失败次数过多，账户已暂时锁定，请在 ${m} 分钟后重试。`,
    "signin-throttled": (m) => `此地址登录失败次数过多，请在 ${m} 分钟后重试。`,
    "invalid-request": "请填写用户名和密码。",
    other: "暂时无法登录，请稍后再试。",
    busy: "正在登录……",
    oidcFailed: "统一身份认证登录未成功，请重试或使用用户名和密码登录。",
    oidcNoRole: "您在统一身份认证平台的账号未被授予本系统的任何岗位，请联系本单位管理员。",
  },
  en: {
    "signin-failed": "The user name or password is wrong.",
    "totp-required": "Enter the 6-digit code from your authenticator app.",
    "account-locked": (m) => `Too many failed sign-ins: the account is locked. Try again in ${m} minute(s).`,
    "signin-throttled": (m) => `Too many failed sign-ins from this address. Try again in ${m} minute(s).`,
    "invalid-request": "Enter your user name and password.",
    other: "Sign-in is not possible right now. Please try again later.",
    busy: "Signing in…",
    oidcFailed: "Sign-in through the identity platform did not succeed. Try again or use your user name and password.",
    oidcNoRole: "Your identity platform account holds no role in this system. Please ask your office's administrator.",
  },
};

const params = new URLSearchParams(location.search);
let lang = params.get("lang") === "en" || localStorage.getItem("tongban.lang") === "en" ? "en" : "zh";

function nextPath() {
  const next = params.get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-zh]")) {
    el.textContent = el.dataset[lang];
  }
  document.title = document.querySelector("h1").textContent;
  const button = document.getElementById("lang");
  button.textContent = lang === "zh" ? "English" : "中文";
  button.lang = lang === "zh" ? "en" : "zh-CN";
  button.setAttribute("aria-label", button.textContent);
  if (shown) say(shown);
}

let shown = null; // what the message says, as a function of the language

function say(message) {
  shown = message;
  document.getElementById("message").textContent = message ? message() : "";
}

function explain(problem) {
  const t = TEXT[lang];
  const entry = t[problem.code];
  if (typeof entry === "function") {
    return entry(Math.max(1, Math.ceil((problem.retry_after || 60) / 60)));
  }
  return entry || t.other;
}

async function signIn(event) {
  event.preventDefault();
  const body = {
    user: document.getElementById("user").value.trim(),
    password: document.getElementById("password").value,
  };
  const code = document.getElementById("totp").value.trim();
  if (code) body.totp = code;
  if (!body.user || !body.password) {
    say(() => TEXT[lang]["invalid-request"]);
    return;
  }
  say(() => TEXT[lang].busy);
  let response;
  try {
    response = await fetch("/console/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
  } catch (_) {
    say(() => TEXT[lang].other);
    return;
  }
  if (response.ok) {
    location.assign(nextPath());
    return;
  }
  let problem = {};
  try {
    problem = await response.json();
  } catch (_) {
    /* not a problem document */
  }
  if (problem.code === "totp-required") {
    document.getElementById("totp-row").hidden = false;
    document.getElementById("totp").focus();
  }
  say(() => explain(problem));
}

document.addEventListener("DOMContentLoaded", () => {
  applyLang();
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("tongban.lang", lang);
    applyLang();
  });
  document.getElementById("signin").addEventListener("submit", signIn);
  fetch("/login/options", { headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : {}))
    .then((options) => {
      if (options.oidc) {
        const link = document.getElementById("oidc");
        link.href = "/login/oidc?next=" + encodeURIComponent(nextPath());
        document.getElementById("oidc-row").hidden = false;
      }
    })
    .catch(() => {});
  const error = params.get("error");
  if (error === "oidc") say(() => TEXT[lang].oidcFailed);
  if (error === "oidc-role") say(() => TEXT[lang].oidcNoRole);
  document.getElementById("user").focus();
});
