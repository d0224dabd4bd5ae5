// The give page in Stripe mode: creates the donation with POST /v1/donations (its
// PaymentIntent lives on the organisation's connected account), mounts Stripe's Payment
// Element for it (Stripe.js, initialised with the connected account: a direct charge), and
// confirms with stripe.confirmPayment. The receipt link (donation id and token in the URL's
// fragment, never sent to a server) is shown when the payment succeeds, here or, after a
// redirect (3D Secure, a bank's page), on the return to this page: until then the token is
// kept in this tab's sessionStorage, keyed by the PaymentIntent, and nowhere else.

import { donationBody, readAmount } from "./give-form.js";

const form = document.getElementById("give-form");
const status = document.getElementById("give-status");
const returned = document.getElementById("give-returned");
const continueButton = document.getElementById("give-continue");
const payButton = document.getElementById("give-pay");
const KEPT = "amply.give.";

function receiptLink(donation, token) {
  const link = document.createElement("a");
  link.id = "receipt-link";
  link.href = `/receipt#${new URLSearchParams({ donation, token })}`;
  link.textContent = "Open your receipt";
  return link;
}

function thank(where, kept) {
  where.replaceChildren("Thank you! Your donation is being recorded on the public ledger. ", receiptLink(kept.donation, kept.token), " (keep this link: it is how you prove your gift).");
}

// The return from a redirect: Stripe appends payment_intent and redirect_status.
const query = new URLSearchParams(location.search);
const returnedIntent = query.get("payment_intent");
if (returnedIntent) {
  const kept = JSON.parse(sessionStorage.getItem(KEPT + returnedIntent) ?? "null");
  returned.hidden = false;
  if (kept && ["succeeded", "processing"].includes(query.get("redirect_status"))) {
    thank(returned, kept);
  } else if (kept) {
    returned.textContent = "The payment did not go through; nothing was charged. You can try again below.";
  } else {
    returned.textContent = "This payment was started in another tab or browser: its receipt link is there.";
  }
}

let stripe = null;
let elements = null;
let checkout = null;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (checkout) return;
  const amount = readAmount(form, status);
  if (amount === null) return;
  continueButton.disabled = true;
  status.textContent = "Preparing the payment…";
  try {
    const body = donationBody(form, amount);
    const response = await fetch("/v1/donations", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error?.message ?? `HTTP ${response.status}`);
    const payment = answer.payment;
    stripe = window.Stripe(payment.publishable_key, { stripeAccount: payment.stripe_account });
    elements = stripe.elements({ clientSecret: payment.client_secret });
    elements.create("payment").mount("#payment-element");
    checkout = answer;
    sessionStorage.setItem(KEPT + payment.payment_intent_id, JSON.stringify({ donation: answer.donation.id, token: answer.receipt_token }));
    for (const input of form.querySelectorAll("#amount, #fund, #donor-name, #anonymous")) input.disabled = true;
    continueButton.hidden = true;
    payButton.hidden = false;
    status.textContent = "Enter your card details, then Give.";
  } catch (error) {
    status.textContent = `The donation could not be prepared: ${error.message}`;
    continueButton.disabled = false;
  }
});

payButton.addEventListener("click", async () => {
  payButton.disabled = true;
  status.textContent = "Paying…";
  const returnUrl = `${location.origin}${location.pathname}`;
  const { error, paymentIntent } = await stripe.confirmPayment({ elements, redirect: "if_required", confirmParams: { return_url: returnUrl } });
  if (error) {
    status.textContent = `The payment did not go through: ${error.message ?? "unknown error"}`;
    payButton.disabled = false;
    return;
  }
  if (!["succeeded", "processing"].includes(paymentIntent.status)) {
    status.textContent = `The payment is ${paymentIntent.status}; nothing was charged.`;
    payButton.disabled = false;
    return;
  }
  payButton.hidden = true;
  thank(status, { donation: checkout.donation.id, token: checkout.receipt_token });
});
