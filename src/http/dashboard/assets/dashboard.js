// casino-router dashboard: the only script (the Content-Security-Policy allows no inline code).
// Copy buttons (data-copy names the field to copy) and the live view's reload (data-refresh, seconds).
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.querySelector(button.dataset.copy);
  if (!field) return;
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
});

const live = document.querySelector("[data-refresh]");
if (live) {
  const seconds = Number(live.dataset.refresh) || 5;
  setTimeout(() => { if (!document.hidden) location.reload(); else document.addEventListener("visibilitychange", () => location.reload(), { once: true }); }, seconds * 1000);
}
