// The live view of a training run: server-sent events -> stats, charts, layers, predictions;
// the controls post to /api/control with the token.
"use strict";

const live = {
  WINDOW: 50,  // steps in the moving averages (the demo's windowed loss and accuracy)
  scalars: [],
  epochs: [],
  testAcc: [],
  layerRows: new Map(),  // layer name -> {info, pictures} elements, kept between updates
  received: 0,
  redrawPending: false,

  start() {
    const source = new EventSource("/events");
    source.onopen = () => { cnn.byId("connection").textContent = "live"; };
    source.onerror = () => { cnn.byId("connection").textContent = "reconnecting..."; };
    for (const kind of ["status", "scalars", "epoch", "layers", "maps", "predictions",
                        "controls", "replay", "dropped"]) {
      source.addEventListener(kind, message => {
        live.received += 1;
        document.body.dataset.events = live.received;
        live.handle(kind, JSON.parse(message.data));
      });
    }
    live.wireControls();
  },

  handle(kind, data) {
    if (kind === "replay") {
      live.scalars = []; live.epochs = []; live.testAcc = [];
      data.events.forEach(([k, payload]) => live.handle(k, payload));
      return;
    }
    const handler = {status: live.status, scalars: live.scalar, epoch: live.epoch,
      layers: live.layers, maps: live.maps, predictions: live.predictions,
      controls: live.controls, dropped: d => {
        cnn.byId("stat-dropped").textContent = cnn.num(d.dropped);
      }}[kind];
    if (handler) handler(data);
  },

  status(s) {
    const state = cnn.byId("state");
    state.textContent = s.state;
    state.className = "pill " + s.state;
    const parts = [s.run, s.model && `${s.model} on ${s.data}`].filter(Boolean);
    cnn.byId("run-title").textContent = parts.join(": ") + (s.message ? ` (${s.message})` : "");
    if (s.test && s.test.acc !== undefined) {
      cnn.byId("stat-test-acc").textContent = cnn.percent(s.test.acc) + " (final test)";
      cnn.byId("stat-test-acc").dataset.final = s.test.acc;
    }
    cnn.byId("btn-pause").disabled = !cnn.token || s.state !== "training";
    cnn.byId("btn-resume").disabled = !cnn.token || s.state !== "paused";
  },

  scalar(s) {
    live.scalars.push(s);
    if (live.scalars.length > 5000) live.scalars.splice(0, live.scalars.length - 5000);
    const recent = live.scalars.slice(-live.WINDOW);
    const mean = key => {
      const values = recent.map(r => r[key]).filter(v => v !== null && v !== undefined);
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    };
    cnn.byId("stat-examples").textContent = cnn.num(s.examples);
    cnn.byId("stat-step").textContent = `${s.epoch} / ${cnn.num(s.step)}`;
    cnn.byId("stat-loss").textContent = cnn.num(mean("loss"), 4);
    cnn.byId("stat-train-acc").textContent = cnn.percent(mean("accuracy"));
    cnn.byId("stat-lr").textContent = cnn.num(s.lr);
    cnn.byId("stat-speed").textContent = cnn.num(Math.round(s.images_per_s || 0));
    cnn.byId("stat-time").textContent = s.forward_ms === null || s.forward_ms === undefined
      ? `${cnn.num(s.ms_per_example)} ms` : `${cnn.num(s.forward_ms)} ms / ${cnn.num(s.backward_ms)} ms`;
    live.scheduleRedraw();
  },

  epoch(e) {
    live.epochs.push(e);
    cnn.byId("stat-val-acc").textContent = cnn.percent(e.val_acc);
    live.scheduleRedraw();
  },

  // Charts are redrawn at most once per animation frame, however fast events arrive.
  scheduleRedraw() {
    if (live.redrawPending) return;
    live.redrawPending = true;
    requestAnimationFrame(() => { live.redrawPending = false; live.redraw(); });
  },

  redraw() {
    const pick = key => live.scalars.filter(s => s[key] !== null && s[key] !== undefined)
      .map(s => [s.step, s[key]]);
    const loss = pick("loss");
    charts.draw(cnn.byId("loss-chart"), [
      {name: "loss", points: loss, colour: "#9ecae1", width: 1},
      {name: `mean of ${live.WINDOW}`, points: charts.smooth(loss, live.WINDOW), colour: "#08519c"},
    ], {xlabel: "step"});
    charts.draw(cnn.byId("acc-chart"), [
      {name: "train (moving average)", points: charts.smooth(pick("accuracy"), live.WINDOW)},
      {name: "validation", points: live.epochs.filter(e => e.val_acc !== undefined)
        .map(e => [e.step, e.val_acc]), dots: true},
      {name: "test batch", points: live.testAcc, dots: true},
    ], {xlabel: "step"});
  },

  layerRow(name) {
    if (!live.layerRows.has(name)) {
      const info = cnn.el("div", {class: "info"});
      const pictures = cnn.el("div", {class: "pictures"});
      const row = cnn.el("div", {class: "layer", "data-name": name}, [info, pictures]);
      cnn.byId("layers").append(row);
      live.layerRows.set(name, {info, pictures});
    }
    return live.layerRows.get(name);
  },

  layers(event) {
    for (const layer of event.layers) {
      const range = r => r ? `min ${cnn.num(r.min)}, max ${cnn.num(r.max)}` : "-";
      const {info} = live.layerRow(layer.name);
      info.replaceChildren(
        cnn.el("b", {text: `${layer.type} ${layer.name}`}),
        cnn.el("div", {text: `output ${layer.output.join("x")}` +
          (layer.sizes ? `, ${layer.sizes}` : "")}),
        cnn.el("div", {text: `parameters ${cnn.num(layer.params)}`}),
        cnn.el("div", {text: `activations ${range(layer.act)}`}),
        cnn.el("div", {text: `gradients ${range(layer.grad)}`}));
    }
  },

  maps(event) {
    cnn.byId("input-picture").replaceChildren(cnn.el("span", {class: "label", text: "input"}),
      cnn.picture(event.input, 2, "input image", 96));
    for (const layer of event.layers) {
      const {pictures} = live.layerRow(layer.name);
      const figures = [["activations", layer.activations], ["gradients", layer.gradients],
        ["filters", layer.weights], ["filter gradients", layer.weight_grads]]
        .filter(([, src]) => src)
        .map(([title, src]) => cnn.el("figure", {}, [cnn.picture(src, 2, title, 72, 40),
          cnn.el("figcaption", {text: title})]));
      pictures.replaceChildren(...figures);
    }
  },

  predictions(event) {
    if (event.step !== undefined) live.testAcc.push([event.step, event.accuracy]);
    if (!cnn.byId("stat-test-acc").dataset.final) {
      cnn.byId("stat-test-acc").textContent = cnn.percent(event.accuracy);
    }
    cnn.byId("predictions").replaceChildren(...event.items.map(item => cnn.el("div",
      {class: "prediction " + (item.correct ? "correct" : "mistake")},
      [cnn.picture(item.image, 1, `true class ${item.label}`, 56), cnn.bars(item.top, item.label)])));
    live.scheduleRedraw();
  },

  controls(event) {
    const values = event.values || {};
    for (const key of ["lr_multiplier", "momentum", "weight_decay", "batch_size"]) {
      const input = cnn.byId("in-" + key);
      if (values[key] !== undefined && values[key] !== null && document.activeElement !== input) {
        input.value = values[key];
        input.dataset.sent = input.value;  // Apply sends only what the student changed
      }
    }
    const applied = (event.applied || []).map(c => (c.value === null || c.value === undefined
      ? c.action : `${c.action}=${c.value}`) + (c.error ? ` refused (${c.error})` : "") +
      (c.when ? ` (${c.when})` : "") + (c.replayed ? " (replayed from the events file)" : ""));
    if (applied.length) {
      cnn.byId("control-applied").textContent =
        `the trainer applied at step ${event.step}: ${applied.join(", ")}`;
    }
  },

  async send(action, value) {
    const message = cnn.byId("control-message");
    try {
      const body = value === undefined ? {action} : {action, value};
      await cnn.post("/api/control", JSON.stringify(body), "application/json");
      message.textContent = `sent ${action}${value === undefined ? "" : " " + value}; ` +
        "applied at the next step";
    } catch (error) {
      message.textContent = "refused: " + error.message;
    }
  },

  wireControls() {
    for (const id of ["btn-pause", "btn-resume", "btn-save", "btn-stop"]) {
      const button = cnn.byId(id);
      button.addEventListener("click", () => {
        if (id === "btn-stop" && !confirm("Stop training? The run saves and ends.")) return;
        live.send(button.dataset.action);
      });
    }
    cnn.byId("btn-apply").addEventListener("click", async () => {
      for (const key of ["lr_multiplier", "momentum", "weight_decay", "batch_size"]) {
        const input = cnn.byId("in-" + key);
        if (input.value !== "" && input.dataset.sent !== input.value) {
          input.dataset.sent = input.value;
          await live.send(key, Number(input.value));
        }
      }
    });
  },
};
