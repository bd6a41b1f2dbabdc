// Progressive enhancement only: every page works without it.
// A payment result page that is still processing reloads itself until the webhook has arrived.
document.addEventListener("DOMContentLoaded", () => {
  const waiting = document.querySelector("[data-refresh-seconds]");
  if (waiting) {
    const seconds = Number(waiting.getAttribute("data-refresh-seconds")) || 2;
    window.setTimeout(() => window.location.reload(), seconds * 1000);
  }
});
