// The wallet console. Everything shown is put in the page as text (textContent), never
// as markup: names and descriptions come from other people.

import * as api from "./api.js";
import qrcode from "./vendor/qrcode/qrcode.mjs";
import {
  CURRENCIES,
  TEST_CARDS,
  amountHint,
  explain,
  failureInWords,
  outcomeUnknown,
  parseAmount,
  when,
} from "./words.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["auth", "wallets", "topup", "send", "receive", "payouts", "history", "statement", "limits", "developers"];
let wallets = [];
let user = null;
let resumeTo = null; // the view an expired session interrupted, to return to after login

// -- small DOM helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") node.textContent = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function say(message, kind = "alert") {
  const other = kind === "alert" ? $("notice") : $("alert");
  other.hidden = true;
  const box = $(kind);
  box.textContent = message;
  box.hidden = !message;
}

function clearMessages() {
  say("", "alert");
  say("", "notice");
}

// Runs one user action; whatever goes wrong is said in words.
async function attempt(action) {
  try {
    await action();
  } catch (err) {
    say(explain(err));
  }
}

function option(value, label) {
  return el("option", { value, text: label });
}

// -- one submit, one Idempotency-Key: kept across the retries of that submit (a double
// click, or submitting again after a network error), new for the next one.

class Submission {
  constructor() {
    this.key = null;
    this.body = null;
    this.busy = false;
  }

  keyFor(body) {
    const text = JSON.stringify(body);
    if (this.key === null || this.body !== text) {
      this.key = crypto.randomUUID();
      this.body = text;
    }
    return this.key;
  }

  settle() {
    this.key = null;
    this.body = null;
  }
}

async function submit(button, submission, body, run) {
  if (submission.busy) return undefined; // a second click while the first is in flight
  submission.busy = true;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const result = await run(submission.keyFor(body));
    submission.settle();
    return result;
  } catch (err) {
    // Only an answer that says what happened settles a submit; after one that does not
    // (no answer, 409, 502-504), the same key goes out again.
    if (!outcomeUnknown(err)) submission.settle();
    throw err;
  } finally {
    submission.busy = false;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const LOOKUPS = 3;

// A submit whose answer the server gave but that says nothing of the outcome (503, 504,
// 409...) is looked up: the same key again, a few times, as the server asks (Retry-After).
// No answer at all is left to the person, who confirms again.
async function submitAndCheck(button, submission, body, run) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await submit(button, submission, body, run);
    } catch (err) {
      const checkable = err instanceof api.ApiError && outcomeUnknown(err);
      if (!checkable || attempt >= LOOKUPS) throw err;
      say("We could not confirm the outcome yet: checking…");
      await sleep(Math.min(Number(err.retryAfter) || 1, 5) * 1000);
    }
  }
}

// -- views

function show(view) {
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  const signed = api.signedIn();
  $("nav").hidden = !signed;
  $("who").hidden = !signed;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#${view}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  const [view, query] = (location.hash || "#wallets").slice(1).split("?");
  if (!api.signedIn()) {
    if (query) resumeTo = `${view}?${query}`; // a payment link: back to it after login
    show("auth");
    return;
  }
  const target = VIEWS.includes(view) && view !== "auth" ? view : "wallets";
  show(target);
  await attempt(async () => {
    if (["wallets", "topup", "send", "receive", "payouts", "statement", "limits"].includes(target)) {
      await loadWallets();
    }
    if (target === "statement") defaultPeriod();
    if (target === "developers") await loadWebhooks();
    if (target === "send" && query) fillFromLink(new URLSearchParams(query));
    if (target === "receive") $("receive-manual-choice").hidden = user?.account_type !== "merchant";
    if (target === "history") {
      await loadWallets();
      await loadHistory(null);
    }
  });
}

function sessionExpired() {
  // Back to login, the interrupted view left as it is (what was typed stays in its form).
  resumeTo = (location.hash || "#wallets").slice(1);
  user = null;
  $("auth-reason").textContent = "Your session has ended. Log in again to continue where you were.";
  $("auth-reason").hidden = false;
  show("auth");
  $("login-email").focus();
}

// A form whose submit calls the API: one submit at a time, and any error said in words.
function onSubmit(id, handler) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    const form = event.target;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    await attempt(() => handler(form));
    button.disabled = false;
  });
}

// -- auth

onSubmit("login-form", async (form) => {
  user = await api.login(form.email.value.trim(), form.password.value);
  form.password.value = "";
  $("who-name").textContent = user.full_name;
  $("auth-reason").hidden = true;
  const target = `#${resumeTo || "wallets"}`;
  resumeTo = null;
  if (location.hash === target) await route();
  else location.hash = target;
});

onSubmit("register-form", async (form) => {
  const body = {
    email: form.email.value.trim(),
    password: form.password.value,
    full_name: form.full_name.value,
    account_type: form.account_type.value,
  };
  await api.call("POST", "/users/register", { body, auth: false });
  $("login-email").value = body.email;
  form.reset();
  say("Account created. Log in with your email and password.", "notice");
  $("login-password").focus();
});

$("logout").addEventListener("click", async () => {
  await api.logout().catch(() => {});
  user = null;
  wallets = [];
  resumeTo = null;
  for (const form of document.querySelectorAll("form")) form.reset();
  $("confirm").hidden = true;
  $("tx-detail").hidden = true;
  clearMessages();
  say("You are logged out.", "notice");
  location.hash = "#login";
  show("auth");
});

// -- wallets

async function loadWallets() {
  const data = await api.call("GET", "/wallets");
  wallets = data.items;
  const rows = $("wallet-rows");
  rows.replaceChildren(
    ...wallets.map((w) =>
      el(
        "tr",
        {},
        el("td", { text: w.currency }),
        el("td", { text: `${w.balance} ${w.currency}`, class: "num" }),
        el("td", { text: `${w.held_balance} ${w.currency}`, class: "num" }),
        el("td", { text: `${w.available_balance} ${w.currency}`, class: "num" }),
        el("td", { text: w.status === "ACTIVE" ? "Active" : "Inactive" }),
        el("td", {}, el("code", { text: w.id })),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            text: w.status === "ACTIVE" ? `Deactivate ${w.currency}` : `Activate ${w.currency}`,
            onclick: () => toggleWallet(w),
          }),
        ),
      ),
    ),
  );
  $("no-wallets").hidden = wallets.length > 0;
  const have = new Set(wallets.map((w) => w.currency));
  const open = Object.keys(CURRENCIES).filter((c) => !have.has(c));
  $("open-currency").replaceChildren(...open.map((c) => option(c, c)));
  $("open-form").hidden = open.length === 0;
  const choices = () =>
    wallets.map((w) => option(w.id, `${w.currency} (${w.available_balance} ${w.currency} available)`));
  for (const id of ["topup-wallet", "send-source", "payouts-source", "receive-wallet", "statement-wallet", "limits-wallet"]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren(...choices());
    if (wallets.some((w) => w.id === keep)) select.value = keep;
  }
  const filter = $("filter-wallet");
  const keep = filter.value;
  filter.replaceChildren(option("", "All"), ...wallets.map((w) => option(w.id, w.currency)));
  filter.value = wallets.some((w) => w.id === keep) ? keep : "";
  hints();
  await loadAuthorizations();
}

// -- authorizations: money held for a payment, captured or voided later

function mineAt(walletId) {
  return wallets.some((w) => w.id === walletId);
}

async function loadAuthorizations() {
  const data = await api.call("GET", "/transactions?status=AUTHORIZED&limit=100");
  const open = data.items.sort((a, b) => a.authorization_expires_at.localeCompare(b.authorization_expires_at));
  $("authorization-rows").replaceChildren(
    ...open.map((t) => {
      const label = `${t.description || "payment"} of ${t.amount} ${t.currency}`;
      const actions = el("td", {});
      if (mineAt(t.destination_wallet_id)) {
        const input = el("input", {
          inputmode: "decimal",
          autocomplete: "off",
          value: t.amount,
          "aria-label": `Amount to capture of the ${label}`,
          class: "short",
        });
        actions.append(
          input,
          el("button", {
            type: "button",
            text: "Capture",
            "aria-label": `Capture the ${label}`,
            onclick: (event) => capture(t, input.value, event.target),
          }),
        );
      }
      actions.append(
        el("button", {
          type: "button",
          class: "secondary",
          text: "Void",
          "aria-label": `Void the ${label}`,
          onclick: (event) => voidIt(t, event.target),
        }),
      );
      return el(
        "tr",
        {},
        el("td", { text: `${t.description || "Payment"} (${mineAt(t.destination_wallet_id) ? "to you" : "by you"})` }),
        el("td", { text: `${t.amount} ${t.currency}`, class: "num" }),
        el("td", { text: when(t.authorization_expires_at) }),
        actions,
      );
    }),
  );
  $("authorizations").hidden = open.length === 0;
}

const stepSubmission = new Submission();

async function capture(t, amountText, button) {
  clearMessages();
  const amount = parseAmount(amountText, t.currency);
  if (!amount) return say(`Please check the amount. ${amountHint(t.currency)}`);
  const body = { amount };
  await attempt(async () => {
    const r = await submitAndCheck(button, stepSubmission, { id: t.id, ...body }, (key) =>
      api.call("POST", `/transactions/${encodeURIComponent(t.id)}/capture`, { body, idempotencyKey: key }),
    );
    if (!r) return;
    await afterStep(t.id);
    say(`Captured: ${r.captured_amount} ${r.currency} of the ${r.amount} ${r.currency} authorized; the rest is released.`, "notice");
  });
  return undefined;
}

async function voidIt(t, button) {
  clearMessages();
  await attempt(async () => {
    const r = await submitAndCheck(button, stepSubmission, { id: t.id, void: true }, (key) =>
      api.call("POST", `/transactions/${encodeURIComponent(t.id)}/void`, { body: {}, idempotencyKey: key }),
    );
    if (!r) return;
    await afterStep(t.id);
    say(`Voided: the ${r.amount} ${r.currency} held is available to the payer again.`, "notice");
  });
}

async function afterStep(id) {
  await loadWallets();
  if (!$("tx-detail").hidden) {
    await loadHistory(cursor);
    await showDetail(id);
  }
}

async function toggleWallet(w) {
  clearMessages();
  const action = w.status === "ACTIVE" ? "deactivate" : "activate";
  await attempt(async () => {
    await api.call("POST", `/wallets/${encodeURIComponent(w.id)}/${action}`);
    say(`Your ${w.currency} wallet is now ${action === "activate" ? "active" : "inactive"}.`, "notice");
    await loadWallets();
  });
}

onSubmit("open-form", async () => {
  const currency = $("open-currency").value;
  await api.call("POST", "/wallets/create", { body: { currency } });
  say(`Your ${currency} wallet is open.`, "notice");
  await loadWallets();
});

function walletById(id) {
  return wallets.find((w) => w.id === id);
}

function hints() {
  for (const [select, hint] of [
    ["topup-wallet", "topup-amount-hint"],
    ["send-source", "send-amount-hint"],
  ]) {
    const w = walletById($(select).value);
    $(hint).textContent = w ? amountHint(w.currency) : "Open a wallet first.";
  }
}
$("topup-wallet").addEventListener("change", hints);
$("send-source").addEventListener("change", hints);

// -- top up

const topupSubmission = new Submission();

for (const [number, outcome] of TEST_CARDS) {
  $("card-rows").append(
    el("tr", {}, el("td", {}, el("code", { text: number })), el("td", { text: outcome })),
  );
}

onSubmit("topup-form", async (form) => {
  const w = walletById(form.wallet.value);
  if (!w) return say("Open a wallet first.");
  const amount = parseAmount(form.amount.value, w.currency);
  if (!amount) return say(`Please check the amount. ${amountHint(w.currency)}`);
  const month = Number.parseInt(form.exp_month.value, 10);
  const year = Number.parseInt(form.exp_year.value, 10);
  if (!Number.isInteger(month) || !Number.isInteger(year)) return say("Please check the expiry date.");
  const body = {
    type: "deposit",
    destination_wallet_id: w.id,
    amount,
    card: { number: form.number.value.replace(/\s+/g, ""), exp_month: month, exp_year: year, cvc: form.cvc.value },
  };
  const tx = await submitAndCheck(form.querySelector("button"), topupSubmission, body, (key) =>
    api.call("POST", "/transactions/create", { body, idempotencyKey: key }),
  );
  if (!tx) return undefined;
  form.number.value = "";
  form.cvc.value = "";
  say(`Done: ${tx.amount} ${tx.currency} added to your ${tx.currency} wallet.`, "notice");
  await loadWallets();
  return undefined;
});

// -- send or pay, with a confirmation step

const sendSubmission = new Submission();
let pending = null; // the reviewed body awaiting confirmation

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearMessages();
  const form = event.target;
  const w = walletById(form.source.value);
  if (!w) return say("Open a wallet first.");
  const amount = parseAmount(form.amount.value, w.currency);
  if (!amount) return say(`Please check the amount. ${amountHint(w.currency)}`);
  const destination = form.destination.value.trim();
  if (!/^[0-9a-fA-F-]{36}$/.test(destination)) return say("Please check the wallet id: it looks like 3f2a…-….");
  const kind = form.kind.value;
  pending = {
    type: kind,
    source_wallet_id: w.id,
    destination_wallet_id: destination,
    amount,
    currency: w.currency,
  };
  const manual = kind === "payment" && form.manual.checked;
  if (manual) pending.capture = "manual";
  const description = form.description.value.trim();
  if (description) pending.description = description;
  // Confirmation of payee: who the money goes to, before it goes.
  let payee;
  try {
    payee = await api.call("GET", `/wallets/${encodeURIComponent(destination)}/payee`);
  } catch (err) {
    return say(explain(err));
  }
  const verb = manual ? "Authorize a payment to" : kind === "payment" ? "Pay" : "Send to";
  const who = `${payee.name} (${payee.account_type === "merchant" ? "merchant" : "person"})`;
  const later = manual ? " The money stays in your wallet, held, until the merchant takes it." : "";
  $("confirm-text").textContent = `${verb} ${who}, wallet ${destination}: ${amount} ${w.currency}, from your ${w.currency} wallet.${later}`;
  form.hidden = true;
  $("confirm").hidden = false;
  $("confirm-yes").focus();
  return undefined;
});

function manualChoice() {
  const payment = $("send-form").kind.value === "payment";
  $("send-manual-choice").hidden = !payment;
  if (!payment) $("send-manual").checked = false;
}
for (const radio of document.querySelectorAll("input[name=kind]")) radio.addEventListener("change", manualChoice);

$("confirm-back").addEventListener("click", () => {
  pending = null;
  $("confirm").hidden = true;
  $("send-form").hidden = false;
});

$("confirm-yes").addEventListener("click", async () => {
  if (!pending) return;
  clearMessages();
  const body = pending;
  try {
    const tx = await submitAndCheck($("confirm-yes"), sendSubmission, body, (key) =>
      api.call("POST", "/transactions/create", { body, idempotencyKey: key }),
    );
    if (!tx) return;
    pending = null;
    $("confirm").hidden = true;
    $("send-form").hidden = false;
    $("send-form").reset();
    if (tx.status === "AUTHORIZED") {
      say(`Authorized: ${tx.amount} ${tx.currency} held for the merchant until ${when(tx.authorization_expires_at)}.`, "notice");
    } else {
      const what = tx.type === "payment" ? "Paid" : "Sent";
      say(`${what}: ${tx.amount} ${tx.currency}.`, "notice");
    }
    await loadWallets();
  } catch (err) {
    say(explain(err));
    if (!outcomeUnknown(err) && !(err instanceof api.SessionExpired)) {
      $("confirm").hidden = true;
      $("send-form").hidden = false;
      pending = null;
    }
  }
});

// -- receive: a payment link (and its QR code) that opens the send form, filled in

onSubmit("receive-form", async (form) => {
  const w = walletById(form.wallet.value);
  if (!w) return say("Open a wallet first.");
  const params = new URLSearchParams({ to: w.id });
  const merchant = user?.account_type === "merchant";
  params.set("kind", merchant ? "payment" : "transfer");
  if (form.amount.value.trim()) {
    const amount = parseAmount(form.amount.value, w.currency);
    if (!amount) return say(`Please check the amount. ${amountHint(w.currency)}`);
    params.set("amount", amount);
  }
  const description = form.description.value.trim();
  if (description) params.set("description", description);
  if (merchant && form.manual.checked) params.set("capture", "manual");
  // Parameters are percent-encoded: the link (and the code) is plain ASCII.
  const link = `${location.origin}/app/#send?${params}`;
  $("receive-link").value = link;
  const qr = qrcode(0, "M");
  qr.addData(link);
  qr.make();
  $("receive-qr").src = qr.createDataURL(4, 4);
  $("receive-result").hidden = false;
  return undefined;
});

function fillFromLink(params) {
  const form = $("send-form");
  const kind = params.get("kind") === "payment" ? "payment" : "transfer";
  form.querySelector(`input[name=kind][value=${kind}]`).checked = true;
  form.destination.value = params.get("to") || "";
  form.amount.value = params.get("amount") || "";
  form.description.value = params.get("description") || "";
  manualChoice();
  $("send-manual").checked = kind === "payment" && params.get("capture") === "manual";
  $("confirm").hidden = true;
  form.hidden = false;
  say("Filled in from a payment link: check it, then Review. Nothing is sent before you confirm.", "notice");
}

// -- payouts: a CSV of transfers, sent as one POST /transactions/batch

// CSV by hand: the console is plain static files with no build step, and this needs
// only RFC 4180's quoting (a quoted field may hold commas, and "" for a quote).
function csvRows(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows
    .map((cells, index) => ({ line: index + 1, cells: cells.map((x) => x.trim()) }))
    .filter((r) => r.cells.some((x) => x));
}

const payoutSubmission = new Submission();
let payouts = null; // the reviewed batch awaiting confirmation: {body, lines}

onSubmit("payouts-form", async (form) => {
  const w = walletById(form.source.value);
  if (!w) return say("Open a wallet first.");
  const file = form.file.files[0];
  const text = file ? await file.text() : form.text.value;
  let rows = csvRows(text);
  if (rows.length && /wallet/i.test(rows[0].cells[0])) rows = rows.slice(1); // a header
  if (!rows.length) return say("There are no payouts in it: one line per payout, please.");
  if (rows.length > 1000) return say(`That is ${rows.length} payouts: at most 1,000 at once.`);
  const items = [];
  for (const { line, cells } of rows) {
    const [destination, amountText, description] = cells;
    if (!/^[0-9a-fA-F-]{36}$/.test(destination || "")) {
      return say(`Line ${line}: please check the wallet id: it looks like 3f2a…-….`);
    }
    const amount = parseAmount(amountText || "", w.currency);
    if (!amount) return say(`Line ${line}: please check the amount. ${amountHint(w.currency)}`);
    const item = { type: "transfer", source_wallet_id: w.id, destination_wallet_id: destination, amount };
    if (description) item.description = description;
    items.push(item);
  }
  const total = items.reduce((sum, i) => sum + Number(i.amount), 0);
  payouts = { body: { items }, lines: rows.map((r) => r.line) };
  $("payouts-confirm-text").textContent =
    `Send ${items.length} payout${items.length === 1 ? "" : "s"}, ${total.toFixed(CURRENCIES[w.currency])} ${w.currency} in all, from your ${w.currency} wallet.`;
  form.hidden = true;
  $("payouts-confirm").hidden = false;
  $("payouts-yes").focus();
  return undefined;
});

function payoutsBack() {
  payouts = null;
  $("payouts-confirm").hidden = true;
  $("payouts-form").hidden = false;
}
$("payouts-back").addEventListener("click", payoutsBack);

$("payouts-yes").addEventListener("click", async () => {
  if (!payouts) return;
  clearMessages();
  const { body, lines } = payouts;
  try {
    const out = await submitAndCheck($("payouts-yes"), payoutSubmission, body, (key) =>
      api.call("POST", "/transactions/batch", { body, idempotencyKey: key }),
    );
    if (!out) return;
    payoutsBack();
    $("payouts-form").reset();
    const done = out.items.filter((t) => t.status === "COMPLETED").length;
    $("payouts-summary").textContent = `${done} of ${out.items.length} payouts sent; line by line:`;
    $("payout-rows").replaceChildren(
      ...out.items.map((t, i) =>
        el(
          "tr",
          {},
          el("td", { text: String(lines[i]), class: "num" }),
          el("td", {}, el("code", { text: t.destination_wallet_id })),
          el("td", { text: `${t.amount} ${t.currency}`, class: "num" }),
          el("td", { text: t.status === "COMPLETED" ? "Sent" : `Not sent: ${failureInWords(t.failure_code)}` }),
        ),
      ),
    );
    $("payouts-results").hidden = false;
    say(`${done} of ${out.items.length} payouts sent.`, "notice");
    await loadWallets();
  } catch (err) {
    // A 422 names the item: said with its line of the file.
    const item = err instanceof api.ApiError ? err.problem?.errors?.[0]?.loc?.[1] : undefined;
    const where = Number.isInteger(item) ? `Line ${lines[item]}: ` : "";
    say(where + explain(err));
    if (!outcomeUnknown(err) && !(err instanceof api.SessionExpired)) payoutsBack();
  }
});

// -- history

let cursor = null;
let nextCursor = null;

async function loadHistory(from) {
  const form = $("filter-form");
  const params = new URLSearchParams();
  for (const name of ["wallet_id", "type", "status", "limit"]) {
    if (form[name].value) params.set(name, form[name].value);
  }
  if (from) params.set("cursor", from);
  const data = await api.call("GET", `/transactions?${params}`);
  cursor = from;
  nextCursor = data.next_cursor;
  $("tx-rows").replaceChildren(
    ...data.items.map((t) =>
      el(
        "tr",
        {},
        el("td", { text: when(t.created_at) }),
        el("td", { text: t.type }),
        el("td", { text: `${t.amount} ${t.currency}`, class: "num" }),
        el("td", { text: t.failure_code ? `${t.status}: ${failureInWords(t.failure_code)}` : t.status }),
        el("td", { text: t.description || "" }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            text: "Details",
            "aria-label": `Details of the ${t.type} of ${t.amount} ${t.currency}`,
            onclick: () => showDetail(t.id),
          }),
        ),
      ),
    ),
  );
  $("no-tx").hidden = data.items.length > 0;
  $("next-page").hidden = !nextCursor;
  $("first-page").hidden = !cursor;
}

async function showDetail(id) {
  clearMessages();
  await attempt(async () => {
    const t = await api.call("GET", `/transactions/${encodeURIComponent(id)}`);
    const fields = [
      ["Id", t.id],
      ["Type", t.type],
      ["Status", t.status],
      ["Amount", `${t.amount} ${t.currency}`],
      ["From wallet", t.source_wallet_id || "a card"],
      ["To wallet", t.destination_wallet_id],
      ["Description", t.description || ""],
      ["Why it failed", t.failure_code ? `${failureInWords(t.failure_code)} (${t.failure_code})` : ""],
      ["Created", when(t.created_at)],
      ["Last change", when(t.updated_at)],
    ];
    if (t.authorization_expires_at) {
      const until = t.status === "AUTHORIZED" ? "Expires" : "Would have expired";
      fields.push([until, when(t.authorization_expires_at)]);
    }
    if (t.captured_amount) fields.push(["Captured", `${t.captured_amount} ${t.currency} of ${t.amount} ${t.currency} authorized`]);
    if (t.refunded_transaction_id) fields.push(["Refund of", t.refunded_transaction_id]);
    if (t.refunded_amount && Number(t.refunded_amount) > 0) fields.push(["Refunded", `${t.refunded_amount} ${t.currency}`]);
    $("tx-fields").replaceChildren(
      ...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]),
    );
    // What you received (a transfer or a payment) you may give back, in full or in part.
    const mine = mineAt(t.destination_wallet_id);
    const moved = Number(t.captured_amount || t.amount);
    const left = (moved - Number(t.refunded_amount || 0)).toFixed(CURRENCIES[t.currency] ?? 2);
    const waiting = t.status === "AUTHORIZED";
    $("capture-form").hidden = !(waiting && mine);
    $("void-button").hidden = !waiting;
    detailed = t;
    if (waiting) $("capture-amount").value = t.amount;
    const refundable = mine && t.status === "COMPLETED" && ["transfer", "payment"].includes(t.type) && Number(left) > 0;
    $("refund-form").hidden = !refundable;
    if (refundable) {
      refunding = t;
      $("refund-amount").value = left;
      $("refund-reason").value = "";
    }
    $("tx-detail").hidden = false;
    $("close-detail").focus();
  });
}

let refunding = null; // the transaction shown, when it can be refunded
let detailed = null; // the transaction shown

onSubmit("capture-form", (form) => capture(detailed, form.amount.value, form.querySelector("button")));
$("void-button").addEventListener("click", (event) => voidIt(detailed, event.target));
const refundSubmission = new Submission();

onSubmit("refund-form", async (form) => {
  const t = refunding;
  if (!t) return undefined;
  const amount = parseAmount(form.amount.value, t.currency);
  if (!amount) return say(`Please check the amount. ${amountHint(t.currency)}`);
  const body = { amount };
  if (form.reason.value.trim()) body.reason = form.reason.value.trim();
  const r = await submitAndCheck(form.querySelector("button"), refundSubmission, body, (key) =>
    api.call("POST", `/transactions/${encodeURIComponent(t.id)}/refund`, { body, idempotencyKey: key }),
  );
  if (!r) return undefined;
  await loadWallets();
  await loadHistory(cursor);
  await showDetail(t.id); // it clears the messages: the notice comes after
  say(`Refunded: ${r.amount} ${r.currency}.`, "notice");
  return undefined;
});

$("close-detail").addEventListener("click", () => {
  $("tx-detail").hidden = true;
});

onSubmit("filter-form", () => loadHistory(null));

$("next-page").addEventListener("click", () => attempt(() => loadHistory(nextCursor)));
$("first-page").addEventListener("click", () => attempt(() => loadHistory(null)));

// -- statements: the ledger of a period, its totals, a chart, CSV and PDF

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

const isoDay = (d) => d.toISOString().slice(0, 10);

function defaultPeriod() {
  if ($("statement-from").value && $("statement-to").value) return;
  const now = new Date();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  $("statement-from").value = isoDay(first);
  $("statement-to").value = isoDay(next);
}

function statementPath() {
  const wallet = $("statement-wallet").value;
  const from = `${$("statement-from").value}T00:00:00Z`;
  const to = `${$("statement-to").value}T00:00:00Z`;
  const q = new URLSearchParams({ from, to });
  return `/wallets/${encodeURIComponent(wallet)}/statement?${q}`;
}

// The balance over the period as a step line (an SVG drawn here: no library, no CDN).
function drawChart(st) {
  const width = 600;
  const height = 160;
  const pad = 8;
  const start = Date.parse(st.from);
  const end = Math.min(Date.parse(st.to), Math.max(Date.now(), start));
  const span = Math.max(end - start, 1);
  const num = (text) => Number(text);
  const points = [[start, num(st.opening_balance)]];
  for (const e of st.entries) points.push([Date.parse(e.at), num(e.balance_after)]);
  points.push([end, num(st.closing_balance)]);
  const top = Math.max(...points.map(([, b]) => b), 1);
  const x = (t) => pad + ((width - 2 * pad) * Math.min(Math.max(t - start, 0), span)) / span;
  const y = (b) => height - pad - ((height - 2 * pad) * b) / top;
  const line = [];
  let previous = null;
  for (const [t, b] of points) {
    if (previous !== null) line.push(`${x(t).toFixed(1)},${previous.toFixed(1)}`);
    line.push(`${x(t).toFixed(1)},${y(b).toFixed(1)}`);
    previous = y(b);
  }
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    class: "chart",
    "aria-label": `Balance from ${st.opening_balance} to ${st.closing_balance} ${st.currency}, highest ${top} ${st.currency}`,
  });
  chart.append(
    svg("rect", { x: 0.5, y: 0.5, width: width - 1, height: height - 1, fill: "none", stroke: "#c9d1da" }),
    svg("polyline", { points: line.join(" "), fill: "none", stroke: "#0b5cad", "stroke-width": 2 }),
    svg("text", { x: pad + 2, y: 18, "font-size": 12, fill: "#4a5562" }, `${top} ${st.currency}`),
  );
  $("statement-chart").replaceChildren(chart);
}


onSubmit("statement-form", async () => {
  const st = await api.call("GET", statementPath());
  $("statement-period").textContent = `${st.currency} wallet, ${when(st.from)} to ${when(st.to)}`;
  const totals = [
    ["Opening balance", st.opening_balance],
    ["Money in", st.total_credits],
    ["Money out", st.total_debits],
    ["Closing balance", st.closing_balance],
  ];
  $("statement-totals").replaceChildren(
    ...totals.flatMap(([label, value]) => [el("dt", { text: label }), el("dd", { text: `${value} ${st.currency}` })]),
  );
  $("statement-rows").replaceChildren(
    ...st.entries.map((e) =>
      el(
        "tr",
        {},
        el("td", { text: when(e.at) }),
        el("td", { text: e.type || "" }),
        el("td", { text: e.description || "" }),
        el("td", { text: `${e.amount} ${st.currency}`, class: "num" }),
        el("td", { text: `${e.balance_after} ${st.currency}`, class: "num" }),
      ),
    ),
  );
  $("statement-empty").hidden = st.entries.length > 0;
  drawChart(st);
  $("statement-result").hidden = false;
});

async function saveStatement(accept, extension) {
  clearMessages();
  await attempt(async () => {
    const blob = await api.download(statementPath(), accept);
    const link = el("a", {
      href: URL.createObjectURL(blob),
      download: `statement-${$("statement-from").value}-${$("statement-to").value}.${extension}`,
    });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    say(`The statement is downloaded as ${extension.toUpperCase()}.`, "notice");
  });
}

$("statement-csv").addEventListener("click", () => saveStatement("text/csv", "csv"));
$("statement-pdf").addEventListener("click", () => saveStatement("application/pdf", "pdf"));

// -- spending limits

const WINDOWS = [
  ["per_transaction", "Per transaction", null],
  ["daily", "Per day (UTC)", "spent_today"],
  ["monthly", "Per month (UTC)", "spent_this_month"],
];

function minus(a, b, currency) {
  const digits = CURRENCIES[currency];
  const scale = 10 ** digits;
  const left = Math.max(Math.round(Number(a) * scale) - Math.round(Number(b) * scale), 0);
  return digits === 0 ? String(left) : (left / scale).toFixed(digits);
}

function showLimits(l) {
  const money = (v) => (v === null ? "No limit" : `${v} ${l.currency}`);
  $("limits-caption").textContent = `${l.currency} wallet`;
  $("limits-rows").replaceChildren(
    ...WINDOWS.map(([key, label, spentKey]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: label }),
        el("td", { text: money(l[key]), class: "num" }),
        el("td", { text: spentKey ? money(l[spentKey]) : "", class: "num" }),
        el("td", { text: spentKey && l[key] !== null ? money(minus(l[key], l[spentKey], l.currency)) : "", class: "num" }),
        el("td", { text: money(l.maximum[key]), class: "num" }),
      ),
    ),
  );
  $("limits-per-transaction").value = l.per_transaction === l.maximum.per_transaction ? "" : l.per_transaction;
  $("limits-daily").value = l.daily === l.maximum.daily ? "" : l.daily;
  $("limits-monthly").value = l.monthly === l.maximum.monthly ? "" : l.monthly;
  $("limits-result").hidden = false;
}

onSubmit("limits-pick", async () => {
  showLimits(await api.call("GET", `/wallets/${encodeURIComponent($("limits-wallet").value)}/limits`));
});

onSubmit("limits-form", async (form) => {
  const w = walletById($("limits-wallet").value);
  if (!w) return say("Open a wallet first.");
  const body = {};
  for (const [key, label] of WINDOWS) {
    const text = form[key].value.trim();
    if (!text) {
      body[key] = null;
      continue;
    }
    const amount = parseAmount(text, w.currency);
    if (!amount) return say(`Please check ${label.toLowerCase()}. ${amountHint(w.currency)}`);
    body[key] = amount;
  }
  showLimits(await api.call("PUT", `/wallets/${encodeURIComponent(w.id)}/limits`, { body }));
  say("Your limits are saved.", "notice");
  return undefined;
});

// -- developers: webhook endpoints and their deliveries

const MONEY_EVENTS = ["transaction.authorized", "transaction.completed", "transaction.failed", "transaction.voided"];
let shownEndpoint = null;

async function loadWebhooks() {
  const data = await api.call("GET", "/webhooks");
  $("webhook-rows").replaceChildren(
    ...data.items.map((h) =>
      el(
        "tr",
        {},
        el("td", {}, el("code", { text: h.url })),
        el("td", { text: h.events.length > 8 ? "All" : h.events.join(", ") }),
        el("td", { text: when(h.created_at) }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            text: "Deliveries",
            "aria-label": `Deliveries to ${h.url}`,
            onclick: () => attempt(() => loadDeliveries(h)),
          }),
          " ",
          el("button", {
            type: "button",
            class: "secondary",
            text: "Delete",
            "aria-label": `Delete the endpoint ${h.url}`,
            onclick: () => attempt(() => deleteWebhook(h)),
          }),
        ),
      ),
    ),
  );
  $("no-webhooks").hidden = data.items.length > 0;
  if (shownEndpoint && !data.items.some((h) => h.id === shownEndpoint.id)) {
    shownEndpoint = null;
    $("deliveries").hidden = true;
  }
}

async function deleteWebhook(h) {
  clearMessages();
  await api.call("DELETE", `/webhooks/${encodeURIComponent(h.id)}`);
  say(`The endpoint ${h.url} is deleted: nothing more is sent to it.`, "notice");
  await loadWebhooks();
}

const STATUS_WORDS = { pending: "Waiting to be sent again", succeeded: "Delivered", failed: "Given up" };

async function loadDeliveries(h) {
  shownEndpoint = h;
  const data = await api.call("GET", `/webhooks/${encodeURIComponent(h.id)}/deliveries`);
  $("deliveries-caption").textContent = `To ${h.url}, newest first`;
  $("delivery-rows").replaceChildren(
    ...data.items.map((d) =>
      el(
        "tr",
        {},
        el("td", { text: d.event_type }),
        el("td", { text: STATUS_WORDS[d.status] || d.status }),
        el("td", { text: String(d.attempts), class: "num" }),
        el("td", { text: d.last_error || (d.last_status_code ? `HTTP ${d.last_status_code}` : "") }),
        el("td", { text: when(d.created_at) }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            text: "Retry",
            "aria-label": `Retry: send the ${d.event_type} event again`,
            onclick: () => attempt(() => retryDelivery(h, d)),
          }),
        ),
      ),
    ),
  );
  $("no-deliveries").hidden = data.items.length > 0;
  $("deliveries").hidden = false;
}

async function retryDelivery(h, d) {
  clearMessages();
  await api.call("POST", `/webhooks/${encodeURIComponent(h.id)}/deliveries/${encodeURIComponent(d.id)}/retry`);
  say(`The ${d.event_type} event will be sent again in a moment.`, "notice");
  await loadDeliveries(h);
}

onSubmit("webhook-form", async (form) => {
  const url = form.url.value.trim();
  if (!url) return say("Please give the endpoint's URL.");
  const body = form.which.value === "money" ? { url, events: MONEY_EVENTS } : { url };
  const created = await api.call("POST", "/webhooks", { body });
  $("webhook-secret").value = created.secret;
  $("webhook-secret-box").hidden = false;
  form.reset();
  say(`Endpoint added: ${created.url}.`, "notice");
  await loadWebhooks();
  return undefined;
});

// -- start

api.onSessionExpired(sessionExpired);
window.addEventListener("hashchange", () => {
  clearMessages();
  route();
});
route();
