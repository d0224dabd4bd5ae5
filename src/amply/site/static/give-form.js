// What the give page's two forms share (the sandbox's, give.js; Stripe's, give-stripe.js): the
// amount the donor typed, read as minor units, and the body of POST /v1/donations.

export function minorUnits(text) {
  const m = /^\s*(\d{1,12})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0"));
}

// The amount in minor units; or null, once the donor is told what to enter.
export function readAmount(form, status) {
  const amount = minorUnits(form.amount.value);
  if (amount === null || amount < 1) {
    status.textContent = "Enter an amount such as 25.00.";
    form.amount.setAttribute("aria-invalid", "true");
    form.amount.focus();
    return null;
  }
  form.amount.removeAttribute("aria-invalid");
  return amount;
}

export function donationBody(form, amount) {
  const body = {
    organisation_id: form.dataset.organisation,
    amount,
    currency: form.dataset.currency,
    anonymous: form.anonymous.checked,
  };
  if (form.donor_name.value.trim()) body.donor_name = form.donor_name.value.trim();
  if (form.fund && form.fund.value) body.fund_id = form.fund.value;
  return body;
}
