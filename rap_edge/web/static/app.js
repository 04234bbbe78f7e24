// rap-edge web app: a little progressive enhancement (every form also works without it).
(function () {
  "use strict";
  const csrf = () => (document.querySelector("input[name=csrf_token]") || {}).value || "";

  // Live: refresh the names and descriptions under each stream every 2 s.
  const cams = document.querySelectorAll("[data-camera]");
  if (cams.length) {
    const refresh = async () => {
      try {
        const res = await fetch("/api/live", { credentials: "same-origin" });
        if (!res.ok) return;
        for (const cam of await res.json()) {
          const fig = document.querySelector(`[data-camera="${cam.index}"]`);
          if (!fig) continue;
          fig.querySelector("[data-names]").textContent = cam.names.length ? cam.names.join(", ") : "nobody known";
          fig.querySelector("[data-desc]").textContent = cam.description || "";
          const err = cam.error && cam.error !== "the source ended" ? cam.error : "";
          fig.querySelector("[data-error]").textContent = err;
        }
      } catch (e) { /* the next tick tries again */ }
    };
    refresh();
    setInterval(refresh, 2000);
  }

  // Ask without leaving the page.
  const ask = document.getElementById("ask");
  if (ask) {
    ask.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = document.getElementById("answer");
      out.textContent = "Thinking…";
      const body = new FormData(ask);
      body.delete("csrf_token");
      try {
        const res = await fetch("/api/ask", { method: "POST", body, credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } });
        const data = await res.json();
        out.textContent = res.ok ? data.answer : (data.error || "Something went wrong.");
      } catch (e) {
        out.textContent = "The device did not answer; try again.";
      }
    });
  }
})();
