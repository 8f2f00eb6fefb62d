// What the console says: errors in words from the problem's `code`, card outcomes, and
// amounts as decimal strings in each currency's minor digits (never a float).

import { ApiError, NetworkError, SessionExpired } from "./api.js";

export const CURRENCIES = { USD: 2, EUR: 2, GBP: 2, JPY: 0 };

export const TEST_CARDS = [
  ["4242424242424242", "Succeeds: the money arrives."],
  ["4000000000000002", "Declined by the bank."],
  ["4000000000009995", "Declined: not enough funds on the card."],
  ["4000000000000069", "Refused: the card has expired."],
  ["4000000000000119", "The card processor fails: nothing is charged."],
];

const CODES = {
  INSUFFICIENT_FUNDS: "There is not enough money in that wallet.",
  WALLET_INACTIVE: "That wallet is inactive: it can neither send nor receive money.",
  CURRENCY_MISMATCH: "Both wallets must hold the same currency.",
  SAME_WALLET: "You cannot send money to the wallet it comes from.",
  NOT_A_MERCHANT: "That wallet does not belong to a merchant; send it as a transfer instead.",
  CARD_DECLINED: "The card was declined. Nothing was charged.",
  CARD_EXPIRED: "The card has expired. Nothing was charged.",
  PAYMENT_GATEWAY_ERROR: "The card processor failed. Nothing was charged; try again later.",
  LIMIT_EXCEEDED: "That would take the wallet past one of its spending limits (see Limits).",
  URL_NOT_ALLOWED: "That address cannot be called: it must be a public https:// URL.",
  TOO_MANY_WEBHOOKS: "You have 10 endpoints already: delete one first.",
  WEBHOOK_NOT_FOUND: "No such endpoint.",
  DELIVERY_NOT_FOUND: "No such delivery.",
  LIMIT_ABOVE_MAXIMUM: "That is above the maximum your account allows for this limit.",
  WALLET_NOT_FOUND: "No such wallet. Check the wallet id.",
  REFUND_EXCEEDS_AMOUNT: "That is more than can still be refunded.",
  INVALID_TRANSACTION_STATE: "This transaction cannot be changed any more.",
  AMOUNT_EXCEEDS_AUTHORIZED: "That is more than was authorized.",
  AUTHORIZATION_EXPIRED: "Nobody captured it before it expired: the money was released.",
  FORBIDDEN: "Only the one who received the money can refund it.",
  TRANSACTION_NOT_FOUND: "No such transaction.",
  WALLET_EXISTS: "You already have a wallet in that currency.",
  EMAIL_TAKEN: "An account with that email already exists. Log in instead.",
  INVALID_CREDENTIALS: "The email or the password is wrong.",
  UNAUTHORIZED: "Please log in.",
  IDEMPOTENCY_KEY_REUSED: "This request clashes with an earlier one. Start again.",
  REQUEST_IN_PROGRESS: "That request is still being processed. Wait a moment, then look at your history.",
  PAYLOAD_TOO_LARGE: "That is too much data.",
  NOT_FOUND: "Not found.",
  SERVICE_UNAVAILABLE: "The service is not available right now. Try again in a moment.",
};

const FIELDS = {
  email: "the email",
  password: "the password",
  full_name: "the full name",
  amount: "the amount",
  destination_wallet_id: "the wallet id",
  source_wallet_id: "the wallet",
  number: "the card number",
  exp_month: "the expiry month",
  exp_year: "the expiry year",
  cvc: "the CVC",
  description: "the description",
  currency: "the currency",
  url: "the URL",
  events: "the events",
  per_transaction: "the limit per transaction",
  daily: "the daily limit",
  monthly: "the monthly limit",
  from: "the start of the period",
  to: "the end of the period",
};

// An answer that says nothing of what happened to a money request: none at all, "not
// available" or "timed out" (the service, a balancer, the gateway's upstream timeout),
// or "a request with this key is still running". The same submit then sends the same
// Idempotency-Key again: the server answers a repeat with the first outcome.
export function outcomeUnknown(err) {
  if (err instanceof NetworkError) return true;
  return err instanceof ApiError && [409, 502, 503, 504].includes(err.status);
}

export function explain(err) {
  if (err instanceof ApiError && outcomeUnknown(err)) {
    return "We are still checking what happened to this request. Confirm again in a moment: it will not be applied twice.";
  }
  if (err instanceof NetworkError) {
    return "No answer from the server. Your request may not have arrived: submit again, it will not be applied twice.";
  }
  if (err instanceof SessionExpired) return "Your session has ended. Log in again to continue.";
  if (!(err instanceof ApiError)) return "Something went wrong in this page. Reload it.";
  if (err.code === "RATE_LIMITED") {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} seconds.` : "";
    return `Too many requests.${wait}`;
  }
  if (err.code === "VALIDATION_ERROR") {
    const fields = (err.problem.errors || [])
      .map((e) => FIELDS[(e.loc || []).at(-1)])
      .filter(Boolean);
    const which = [...new Set(fields)].join(", ");
    return which ? `Please check ${which}.` : "Some of what you entered is not valid.";
  }
  return CODES[err.code] || `That did not work (${err.code}).`;
}

export function failureInWords(code) {
  return code ? CODES[code] || code : "";
}

// "12.5" USD -> "12.50"; null when it is not an amount in that currency.
export function parseAmount(text, currency) {
  const digits = CURRENCIES[currency];
  const value = String(text).trim();
  const pattern = digits === 0 ? /^(0|[1-9][0-9]{0,14})$/ : new RegExp(`^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,${digits}})?$`);
  if (!pattern.test(value)) return null;
  const [whole, frac = ""] = value.split(".");
  if (/^0+$/.test(whole + frac)) return null; // zero
  return digits === 0 ? whole : `${whole}.${frac.padEnd(digits, "0")}`;
}

export function amountHint(currency) {
  const digits = CURRENCIES[currency];
  return digits === 0
    ? `${currency} has no minor unit: whole numbers only, e.g. 1500.`
    : `In ${currency}, with up to ${digits} decimals, e.g. 12.50.`;
}

export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
