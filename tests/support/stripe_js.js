// A strict stand-in for Stripe.js v3 (https://js.stripe.com/v3/) for the browser tests, served
// by tests/support/stripe_server.py at /js.stripe.com/payment-element/v3/. It implements only what
// Amply's give page uses, and throws on anything else, so that the page cannot come to rely
// on something the stand-in does not check:
//
//   Stripe(publishableKey, {stripeAccount})
//   stripe.elements({clientSecret})            a PaymentIntent's client secret
//   elements.create("payment")                 one Payment Element, no options
//   paymentElement.mount(selectorOrElement)
//   stripe.confirmPayment({elements, redirect: "if_required", confirmParams: {return_url}})
//
// The Payment Element is a labelled card form (not Stripe's iframe). confirmPayment does what
// Stripe.js does with the publishable key: creates the card PaymentMethod
// (POST /v1/payment_methods) and confirms the PaymentIntent with it
// (POST /v1/payment_intents/{id}/confirm, with its client_secret) on the connected account
// (`_stripe_account`), against the server this script came from. It resolves to
// {paymentIntent} or {error}, as Stripe.js does.
(() => {
  const API = new URL(document.currentScript.src).origin;

  function refuse(what) {
    throw new Error(`Stripe.js stand-in: ${what} is not supported`);
  }

  function only(object, allowed, what) {
    if (object === undefined) return;
    if (object === null || typeof object !== "object") refuse(`${what} that is not an object`);
    for (const name of Object.keys(object)) {
      if (!allowed.includes(name)) refuse(`${what}.${name}`);
    }
  }

  function field(container, id, label, value, help) {
    const p = document.createElement("p");
    const l = document.createElement("label");
    l.htmlFor = id;
    l.textContent = label;
    const input = document.createElement("input");
    input.id = id;
    input.autocomplete = "off";
    input.inputMode = "numeric";
    input.value = value;
    p.append(l, " ", input);
    if (help) {
      const small = document.createElement("small");
      small.textContent = help;
      p.append(" ", small);
    }
    container.append(p);
    return input;
  }

  class PaymentElement {
    constructor() {
      this.inputs = null;
    }

    mount(target) {
      if (this.inputs) refuse("mounting a Payment Element twice");
      const container = typeof target === "string" ? document.querySelector(target) : target;
      if (!(container instanceof HTMLElement)) throw new Error("mount: no such element");
      const box = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = "Card (Stripe.js test stand-in)";
      box.append(legend);
      this.inputs = {
        number: field(box, "stripe-standin-number", "Card number", "", "Test card: 4242 4242 4242 4242"),
        expiry: field(box, "stripe-standin-expiry", "Expiry (MM / YY)", "12 / 34"),
        cvc: field(box, "stripe-standin-cvc", "CVC", "123"),
      };
      container.append(box);
    }
  }

  async function post(path, params) {
    const response = await fetch(`${API}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(params),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || body.error) {
      return { error: body.error ?? { type: "api_error", message: `HTTP ${response.status}` } };
    }
    return { body };
  }

  window.Stripe = function Stripe(publishableKey, options) {
    if (typeof publishableKey !== "string" || !/^pk_(test|live)_\w+$/.test(publishableKey)) {
      throw new Error("Stripe.js stand-in: a publishable key (pk_…) is required");
    }
    only(options, ["stripeAccount"], "Stripe() options");
    const account = options?.stripeAccount;
    if (account !== undefined && !/^acct_\w+$/.test(account)) refuse("a stripeAccount that is not acct_…");
    const made = new Set();

    function auth() {
      const params = { key: publishableKey };
      if (account !== undefined) params._stripe_account = account;
      return params;
    }

    return {
      elements(elementsOptions) {
        only(elementsOptions, ["clientSecret"], "elements() options");
        const clientSecret = elementsOptions?.clientSecret;
        if (typeof clientSecret !== "string" || !/^pi_\w+_secret_\w+$/.test(clientSecret)) {
          refuse("elements() without a PaymentIntent's clientSecret");
        }
        let element = null;
        const elements = {
          create(type, elementOptions) {
            if (type !== "payment") refuse(`elements.create("${type}")`);
            if (elementOptions !== undefined) refuse("Payment Element options");
            if (element) refuse("a second Payment Element");
            element = new PaymentElement();
            return element;
          },
        };
        made.add(elements);
        Object.defineProperty(elements, "state", { value: () => ({ clientSecret, element }) });
        return elements;
      },

      async confirmPayment(args) {
        only(args, ["elements", "redirect", "confirmParams"], "confirmPayment()");
        if (!made.has(args?.elements)) refuse("confirmPayment() without this instance's elements");
        if (args.redirect !== "if_required") refuse("confirmPayment() without redirect: \"if_required\"");
        only(args.confirmParams, ["return_url"], "confirmParams");
        const returnUrl = args.confirmParams?.return_url;
        if (typeof returnUrl !== "string" || !/^https?:\/\//.test(returnUrl)) {
          refuse("confirmPayment() without an absolute confirmParams.return_url");
        }
        const { clientSecret, element } = args.elements.state();
        if (!element?.inputs) refuse("confirmPayment() before the Payment Element is mounted");
        const [month, year] = element.inputs.expiry.value.split("/").map((part) => part.trim());
        const method = await post("/v1/payment_methods", {
          ...auth(),
          type: "card",
          "card[number]": element.inputs.number.value.replace(/\s+/g, ""),
          "card[exp_month]": month ?? "",
          "card[exp_year]": year ? `20${year.slice(-2)}` : "",
          "card[cvc]": element.inputs.cvc.value.trim(),
        });
        if (method.error) return { error: method.error };
        const intent = clientSecret.match(/^(pi_\w+?)_secret_/)[1];
        const confirmed = await post(`/v1/payment_intents/${intent}/confirm`, {
          ...auth(),
          client_secret: clientSecret,
          payment_method: method.body.id,
          return_url: returnUrl,
        });
        if (confirmed.error) return { error: confirmed.error };
        return { paymentIntent: confirmed.body };
      },
    };
  };
})();
