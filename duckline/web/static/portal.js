// Progressive enhancement only: every page works without it.
document.addEventListener("DOMContentLoaded", () => {
  // A payment result page that is still processing reloads itself until the webhook has arrived.
  const waiting = document.querySelector("[data-refresh-seconds]");
  if (waiting) {
    const seconds = Number(waiting.getAttribute("data-refresh-seconds")) || 2;
    window.setTimeout(() => window.location.reload(), seconds * 1000);
  }
  // A table that overflows sideways can be focused, so the keyboard can scroll it too.
  for (const region of document.querySelectorAll(".table-scroll")) {
    if (region.scrollWidth > region.clientWidth && !region.hasAttribute("tabindex")) {
      region.setAttribute("tabindex", "0");
    }
  }
});
