// Poke the network: draw a digit (or upload an image), send it to /api/probe with the token,
// and show the input as the model sees it, every layer's maps, the probabilities and saliency.
"use strict";

const poke = {
  drawing: false,
  drawn: false,

  start() {
    const canvas = cnn.byId("draw");
    const ctx = canvas.getContext("2d");
    poke.clear();
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineWidth = 22;
    ctx.strokeStyle = "#fff";
    const at = event => {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * canvas.width / box.width,
              (event.clientY - box.top) * canvas.height / box.height];
    };
    canvas.addEventListener("pointerdown", event => {
      poke.drawing = true;
      canvas.setPointerCapture(event.pointerId);
      ctx.beginPath();
      ctx.moveTo(...at(event));
      ctx.lineTo(...at(event));
      ctx.stroke();
    });
    canvas.addEventListener("pointermove", event => {
      if (!poke.drawing) return;
      ctx.lineTo(...at(event));
      ctx.stroke();
      poke.drawn = true;
    });
    canvas.addEventListener("pointerup", () => {
      poke.drawing = false;
      if (poke.drawn) poke.classifyDrawing();
    });
    cnn.byId("btn-clear").addEventListener("click", poke.clear);
    cnn.byId("btn-classify").addEventListener("click", poke.classifyDrawing);
    cnn.byId("upload").addEventListener("change", event => {
      const file = event.target.files[0];
      if (!file) return;
      if (cnn.info.upload_limit && file.size > cnn.info.upload_limit) {
        cnn.byId("probe-message").textContent =
          `${file.name} has ${file.size} bytes; the limit is ${cnn.info.upload_limit}`;
        return;
      }
      poke.send(file);
    });
  },

  clear() {
    const canvas = cnn.byId("draw");
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    poke.drawn = false;
  },

  classifyDrawing() {
    cnn.byId("draw").toBlob(blob => poke.send(blob), "image/png");
  },

  async send(blob) {
    const message = cnn.byId("probe-message");
    const run = cnn.byId("probe-run");
    const url = "/api/probe" + (run.hidden || !run.value ? "" :
      "?run=" + encodeURIComponent(run.value));
    message.textContent = "classifying...";
    try {
      const result = await cnn.post(url, blob, blob.type || "application/octet-stream");
      message.textContent = "";
      poke.show(result);
    } catch (error) {
      message.textContent = "refused: " + error.message;
    }
  },

  show(result) {
    const order = result.probabilities.map((p, i) => [result.classes[i], p])
      .sort((a, b) => b[1] - a[1]).slice(0, 10);
    const best = order[0][0];
    const probabilities = cnn.el("div", {class: "probabilities"}, order.map(([name, p]) => {
      const fill = cnn.el("span", {class: "fill " + (name === best ? "right" : "other")});
      fill.style.width = Math.max(1, 100 * p).toFixed(1) + "%";
      return cnn.el("div", {class: "bar", "data-class": name, "data-p": p}, [fill,
        cnn.el("span", {class: "text", text: `${name} ${(100 * p).toFixed(2)}%`})]);
    }));
    const layers = result.layers.map(layer => cnn.el("figure", {class: "probe-layer"}, [
      cnn.picture(layer.activations, 2, layer.name, 72),
      cnn.el("figcaption", {text: `${layer.type} ${layer.name} ${layer.output.join("x")}`})]));
    const figure = (src, caption) => cnn.el("figure", {}, [cnn.picture(src, 2, caption, 160),
      cnn.el("figcaption", {text: caption})]);
    cnn.byId("probe-result").replaceChildren(
      cnn.el("div", {class: "row"}, [figure(result.input, "what the model sees"),
        figure(result.saliency, "saliency of the top class"), probabilities]),
      cnn.el("div", {class: "probe-layers"}, layers));
    cnn.byId("probe-result").dataset.top = best;
  },
};
