// The payment step (templates/purchaselinks/pay.html): stripe.js turns the card into a token
// (Stripe.js "createToken" with a card Element) and the form posts only the token; the server pays with it.
// The page's language (data-locale) goes to the card Element, so Stripe's own messages follow it.
(function () {
  "use strict";
  var form = document.getElementById("pay-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.getAttribute("data-publishable-key"));
  var card = stripe.elements({ locale: form.getAttribute("data-locale") || "auto" }).create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var button = document.getElementById("pay-button");
  var sending = false;
  form.addEventListener("submit", function (event) {
    if (document.getElementById("stripe-token").value) { return; }
    event.preventDefault();
    if (sending) { return; }
    sending = true;
    button.disabled = true;
    errors.textContent = "";
    stripe.createToken(card).then(function (result) {
      if (result.error) {
        errors.textContent = (result.error && result.error.message) || form.getAttribute("data-card-error");
        sending = false;
        button.disabled = false;
        return;
      }
      document.getElementById("stripe-token").value = result.token.id;
      form.submit();
    });
  });
})();
