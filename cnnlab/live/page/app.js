// The cnnlab page: asks the server what it offers (a training run, a network to poke, a runs
// folder) and starts those parts. See docs/LIVE.md.
"use strict";

async function startPage() {
  cnn.info = await cnn.getJson("/api/info");
  cnn.byId("token-note").hidden = Boolean(cnn.token);
  for (const id of ["btn-pause", "btn-resume", "btn-save", "btn-stop", "btn-apply",
                    "btn-classify", "upload"]) {
    cnn.byId(id).disabled = !cnn.token;
  }
  if (cnn.info.live) {
    cnn.byId("live").hidden = false;
    live.start();
    live.redraw();
  } else {
    cnn.byId("state").textContent = "runs";
  }
  if (cnn.info.probe || cnn.info.runs) {
    cnn.byId("poke").hidden = false;
    poke.start();
  }
  if (cnn.info.runs) {
    cnn.byId("runs").hidden = false;
    await runs.start();
  }
  document.body.dataset.ready = "yes";
}

window.addEventListener("DOMContentLoaded", () => {
  startPage().catch(error => {
    cnn.byId("state").textContent = "error";
    cnn.byId("connection").textContent = error.message;
  });
});
