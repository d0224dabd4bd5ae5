// The sandbox give form: creates the donation with POST /v1/donations, completes the
// simulated payment (POST /v1/sandbox/payments/{id}/succeed) and sends the donor to their
// receipt, the token in the URL's fragment (never sent to a server). No card data leaves
// the page: the sandbox needs none.

import { donationBody, readAmount } from "./give-form.js";

const form = document.getElementById("give-form");
const status = document.getElementById("give-status");

async function post(url, body, key) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": key },
    body: body === null ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error?.message ?? `HTTP ${response.status}`);
  return answer;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const amount = readAmount(form, status);
  if (amount === null) return;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  status.textContent = "Giving…";
  try {
    const body = donationBody(form, amount);
    const checkout = await post("/v1/donations", body, crypto.randomUUID());
    status.textContent = "Simulating the card payment…";
    await post(`/v1/sandbox/payments/${encodeURIComponent(checkout.payment.payment_intent_id)}/succeed`, null, crypto.randomUUID());
    const fragment = new URLSearchParams({ donation: checkout.donation.id, token: checkout.receipt_token });
    status.textContent = "Thank you! Opening your receipt…";
    location.assign(`/receipt#${fragment}`);
  } catch (error) {
    status.textContent = `The donation did not go through: ${error.message}`;
    button.disabled = false;
  }
});
