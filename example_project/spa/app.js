"use strict";
// kinwise-auth's browser transport, called from a page on another origin: the
// pattern an SPA copies (docs/spa.md).
//
// * Every call sends and accepts the API's cookies: credentials: "include".
// * The refresh token lives in an HttpOnly cookie only the API reads: this code
//   never sees it. The access token lives in a variable: memory, never storage.
// * Every unsafe call carries the CSRF token in X-CSRFToken. It comes from the
//   JSON of GET csrf/: a page on another origin cannot read the API's cookies.
// * On load, POST token/refresh/ restores the session (401: there is none).

// config.js (served by the demo launcher) names the API; an SPA hard-codes it.
const API = window.KINWISE_API || "http://localhost:8000/api/v1/auth/browser/";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

let access = null; // the access token: in memory only, gone on reload
let csrfToken = null; // from GET csrf/
let refreshing = null; // the refresh under way, which every caller waits for

async function send(method, path, { body, auth = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && access) headers.Authorization = `Bearer ${access}`;
  let status = 0, data = null;
  try {
    if (UNSAFE.has(method)) headers["X-CSRFToken"] = await csrf();
    const response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "include",
    });
    status = response.status;
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  } catch (error) {
    data = { detail: String(error), code: "network_error" };
  }
  logCall(method, path, status, data);
  return { status, data };
}

async function csrf() {
  if (!csrfToken) {
    const { status, data } = await send("GET", "csrf/");
    if (status !== 200) throw new Error(`GET csrf/ answered ${status}`);
    csrfToken = data.csrf_token;
  }
  return csrfToken;
}

// A call to the API; refused for CSRF (say, the csrftoken cookie was cleared),
// it is sent once more with a fresh token.
async function api(method, path, options = {}) {
  let answer = await send(method, path, options);
  if (answer.status === 403 && answer.data && answer.data.code === "csrf_failed") {
    csrfToken = null;
    answer = await send(method, path, options);
  }
  return answer;
}

// A new access token from the refresh cookie; its status (200, or 401 when there
// is no session: the API then clears the cookie). One refresh at a time, across
// tabs too: with rotation, a refresh sending the token another one has just
// replaced is refused.
function refresh() {
  const lock = (task) =>
    navigator.locks ? navigator.locks.request("kinwise-refresh", task) : task();
  refreshing ??= lock(async () => {
    const { status, data } = await api("POST", "token/refresh/");
    if (status === 200) access = data.access;
    else if (status === 401) access = null;
    return status;
  }).finally(() => { refreshing = null; });
  return refreshing;
}

// A call as the signed-in user: the access token as a Bearer; expired (401), it
// is refreshed once and the call sent again.
async function authorized(method, path, options = {}) {
  let answer = await api(method, path, { ...options, auth: true });
  if (answer.status === 401 && (await refresh()) === 200) {
    answer = await api(method, path, { ...options, auth: true });
  }
  return answer;
}

async function signIn(email, password) {
  const { status, data } = await api("POST", "login/", { body: { email, password } });
  if (status !== 200) return refused(status, data);
  access = data.access; // the answer holds no refresh token: it is in the cookie
  showSignedIn(data.user);
}

async function whoAmI() {
  const { status, data } = await authorized("GET", "me/");
  if (status === 200) return showSignedIn(data);
  if (status === 401) return showSignedOut();
  refused(status, data);
}

async function logOut() {
  const { status, data } = await api("POST", "logout/"); // the API reads the cookie
  if (status !== 205) return refused(status, data);
  access = null; // the session is over, and the API has cleared the cookie
  showSignedOut();
}

// On load: restore the session, if the refresh cookie holds one.
async function restore() {
  const status = await refresh();
  if (status === 200) await whoAmI();
  else if (status === 401) showSignedOut();
  else {
    document.getElementById("state").textContent =
      `The session could not be checked (${status || "no answer"}): reload to try again.`;
  }
}

// The page.
function showSignedIn(user) {
  document.getElementById("answer").replaceChildren();
  document.getElementById("state").textContent = `Signed in as ${user.email}.`;
  document.getElementById("me").textContent = JSON.stringify(user, null, 2);
  document.getElementById("signed-in").hidden = false;
  document.getElementById("signed-out").hidden = true;
}

function showSignedOut() {
  document.getElementById("state").textContent = "Signed out.";
  document.getElementById("me").textContent = "";
  document.getElementById("signed-in").hidden = true;
  document.getElementById("signed-out").hidden = false;
}

function refused(status, data) {
  const answer = document.getElementById("answer");
  const detail = data && data.detail ? data.detail : JSON.stringify(data);
  answer.textContent = `Refused (${status || "no answer"}): ${detail}`
    + (data && data.code ? ` ${data.code}` : "");
}

function logCall(method, path, status, data) {
  const item = document.createElement("li");
  item.className = status >= 200 && status < 300 ? "ok" : "error";
  item.textContent = `${method} ${path} → ${status || "no answer"}`
    + (data && data.code ? ` ${data.code}` : "");
  document.getElementById("calls").prepend(item);
}

function busy(form, task) {
  return async (event) => {
    if (event) event.preventDefault();
    const buttons = form.querySelectorAll("button");
    for (const button of buttons) button.disabled = true;
    try {
      await task();
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  };
}

const signInForm = document.getElementById("sign-in-form");
signInForm.addEventListener("submit", busy(signInForm, async () => {
  const fields = new FormData(signInForm);
  await signIn(fields.get("email"), fields.get("password"));
}));
const sessionForm = document.getElementById("session-form");
document.getElementById("me-button").addEventListener("click", busy(sessionForm, whoAmI));
document.getElementById("logout-button").addEventListener("click", busy(sessionForm, logOut));

document.getElementById("page-origin").textContent = location.origin;
document.getElementById("api").textContent = API;
restore().finally(() => { document.body.dataset.ready = "yes"; });
