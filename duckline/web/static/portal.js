// Progressive enhancement only: every page works without it.
document.addEventListener("DOMContentLoaded", () => {
  // A payment result page that is still processing reloads itself until the webhook has arrived.
  const waiting = document.querySelector("[data-refresh-seconds]");
  if (waiting) {
    const seconds = Number(waiting.getAttribute("data-refresh-seconds")) || 2;
    window.setTimeout(() => window.location.reload(), seconds * 1000);
  }
  // Registration: the document number's hint follows the document type chosen (each option carries
  // its own); the list of every type's example is only for browsers without this script.
  const documentType = document.getElementById("document_type");
  const documentHint = document.getElementById("document_number-hint");
  if (documentType && documentHint) {
    const examples = document.getElementById("document_number-examples");
    if (examples) examples.hidden = true;
    const follow = () => {
      const chosen = documentType.options[documentType.selectedIndex];
      if (chosen && chosen.dataset.hint) documentHint.textContent = chosen.dataset.hint;
    };
    documentType.addEventListener("change", follow);
    follow(); // the browser may restore another choice when the page is shown again
  }
  // Renewal: the note that automatic renewal needs a card shows while a wallet is chosen.
  const walletHint = document.querySelector("[data-wallet-hint]");
  if (walletHint) {
    const methods = document.querySelectorAll('input[name="method"][type="radio"]');
    const follow = () => {
      const chosen = document.querySelector('input[name="method"][type="radio"]:checked');
      walletHint.hidden = !chosen || chosen.value === "card";
    };
    for (const method of methods) method.addEventListener("change", follow);
    follow();
  }
  // A table that overflows sideways can be focused, so the keyboard can scroll it too.
  for (const region of document.querySelectorAll(".table-scroll")) {
    if (region.scrollWidth > region.clientWidth && !region.hasAttribute("tabindex")) {
      region.setAttribute("tabindex", "0");
    }
  }
});
