// The card page (portal/pay_card.html): Stripe's Payment Element takes the card and confirms the
// PaymentIntent with its client secret; Stripe then sends the browser to our return URL. The card
// number goes from Stripe's frame to Stripe, never through this script or Duckline.
// Everything the script needs is in the form's data- attributes (the CSP allows no inline script).
(() => {
  const form = document.getElementById("card-form");
  if (!form) {
    return;
  }
  const button = document.getElementById("card-pay");
  const errorArea = document.getElementById("card-error");
  const data = form.dataset;

  const showError = (message) => {
    errorArea.textContent = message;
    errorArea.hidden = false;
  };

  if (typeof window.Stripe !== "function") {
    showError(data.unavailableText);
    return;
  }
  const stripe = window.Stripe(data.publishableKey, { locale: data.locale });
  const elements = stripe.elements({ clientSecret: data.clientSecret });
  elements.create("payment").mount("#payment-element");
  button.disabled = false;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (button.disabled) {
      return;
    }
    button.disabled = true;
    errorArea.hidden = true;
    let result;
    try {
      // On success Stripe navigates to return_url and this promise does not settle.
      result = await stripe.confirmPayment({ elements, confirmParams: { return_url: data.returnUrl } });
    } catch (failure) {
      result = { error: {} };
    }
    const error = (result && result.error) || {};
    // Stripe's own message is meant for the payer when the card or its details were refused.
    const known = error.type === "card_error" || error.type === "validation_error";
    showError(known && error.message ? error.message : data.failedText);
    button.disabled = false;
  });
})();
