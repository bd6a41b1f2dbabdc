// A stand-in for Stripe.js v3 (https://js.stripe.com/v3/), which tests cannot reach. The fake Stripe
// of tests/provider_fakes.py serves it at /v3/, and DUCKLINE_STRIPE_JS_URL points the card page at it.
// It does only what duckline/web/static/stripe_pay.js asks of Stripe.js, the way Stripe.js does it:
//
//   Stripe(publishableKey, options).elements({clientSecret}).create("payment").mount(selector)
//   stripe.confirmPayment({elements, confirmParams: {return_url}})
//
// The "Payment Element" is a plain card-number field (Stripe's is a frame of its own) and Stripe's
// test card numbers stand for the fake's payment methods. confirmPayment posts the confirmation to
// the API it was served from, as Stripe.js posts to api.stripe.com (publishable key and client
// secret, no secret key). Then, as Stripe.js: on success it sends the browser to return_url with
// Stripe's query parameters and never settles; otherwise it resolves {error} with Stripe's error.
(() => {
  const api = new URL(document.currentScript.src).origin;
  const TEST_CARDS = {
    "4242424242424242": "pm_card_visa",
    "5555555555554444": "pm_card_mastercard",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000000000009995": "pm_card_chargeDeclinedInsufficientFunds",
  };

  function elementsFor(clientSecret) {
    let field = null;
    return {
      clientSecret,
      cardNumber: () => (field ? field.value.replace(/\s+/g, "") : ""),
      create(type) {
        if (type !== "payment") {
          throw new Error(`the Stripe.js stand-in has no ${type} element`);
        }
        return {
          mount(target) {
            const container = typeof target === "string" ? document.querySelector(target) : target;
            const label = document.createElement("label");
            label.htmlFor = "stand-in-card-number";
            label.textContent = "Card number";
            field = document.createElement("input");
            field.type = "text";
            field.id = "stand-in-card-number";
            field.inputMode = "numeric";
            field.autocomplete = "cc-number";
            container.append(label, field);
          },
        };
      },
    };
  }

  window.Stripe = (publishableKey) => {
    if (!String(publishableKey).startsWith("pk_")) {
      throw new Error("Stripe(): a publishable key (pk_…) is needed");
    }
    return {
      elements: ({ clientSecret }) => elementsFor(clientSecret),

      async confirmPayment({ elements, confirmParams }) {
        const paymentMethod = TEST_CARDS[elements.cardNumber()];
        if (!paymentMethod) {
          return {
            error: { type: "validation_error", code: "incomplete_number", message: "Your card number is incomplete." },
          };
        }
        const intentId = elements.clientSecret.split("_secret_")[0];
        const answer = await fetch(`${api}/v1/payment_intents/${intentId}/confirm`, {
          method: "POST",
          body: new URLSearchParams({
            key: publishableKey,
            client_secret: elements.clientSecret,
            payment_method: paymentMethod,
            return_url: confirmParams.return_url,
          }),
        });
        const body = await answer.json();
        if (!answer.ok) {
          return { error: body.error };
        }
        const back = new URL(confirmParams.return_url);
        back.searchParams.set("payment_intent", body.id);
        back.searchParams.set("payment_intent_client_secret", elements.clientSecret);
        back.searchParams.set("redirect_status", body.status === "succeeded" ? "succeeded" : "processing");
        window.location.assign(back.toString());
        return new Promise(() => {});
      },
    };
  };
})();
