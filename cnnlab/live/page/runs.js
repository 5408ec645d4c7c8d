// The runs browser (cnnlab serve): a table of runs, their curves on shared axes, each run's
// report, a "play" view of the filters at every snapshot, and the run the probe pokes.
"use strict";

const runs = {
  curves: new Map(),  // run id -> metrics.jsonl records
  shown: new Set(),   // runs drawn in the chart
  playTimer: null,

  async start() {
    const table = await cnn.getJson("/api/runs");
    cnn.byId("runs-root").textContent = `${table.runs.length} runs in ${table.root}`;
    runs.table(table.runs);
    const select = cnn.byId("probe-run");
    select.replaceChildren(...table.runs.filter(r => r.task === "classify")
      .map(r => cnn.el("option", {value: r.id, text: r.id})));
    select.hidden = !select.options.length;
    cnn.byId("curve-metric").addEventListener("change", runs.draw);
    for (const row of table.runs.slice(0, 6)) await runs.toggle(row.id, true);
  },

  table(rows) {
    const head = ["", "run", "model", "data", "task", "status", "epochs", "best", "test",
      "report", "snapshots"].map(text => cnn.el("th", {text}));
    const metric = (values, key) => values && values[key] !== undefined ? values[key] : null;
    const body = rows.map(row => {
      const box = cnn.el("input", {type: "checkbox", title: "show its curves"});
      box.addEventListener("change", () => runs.toggle(row.id, box.checked));
      row.checkbox = box;
      const best = row.best.metric ? `${row.best.metric} ${cnn.num(row.best.value)}` : "-";
      const test = metric(row.test, "acc") !== null ? cnn.percent(row.test.acc) : "-";
      const report = row.report ? cnn.el("a", {href: "/report?run=" + encodeURIComponent(row.id),
        target: "_blank", rel: "noopener", text: "report"}) : "-";
      const play = cnn.el("button", {text: `play (${row.snapshots})`});
      play.disabled = !row.snapshots;
      play.addEventListener("click", () => runs.play(row.id));
      return cnn.el("tr", {"data-run": row.id}, [box, row.id, row.model, row.data, row.task,
        row.status, String(row.epochs), best, test, report, play]
        .map(cell => cnn.el("td", {}, [cell])));
    });
    runs.rows = rows;
    cnn.byId("runs-table").replaceChildren(cnn.el("thead", {}, [cnn.el("tr", {}, head)]),
      cnn.el("tbody", {}, body));
  },

  async toggle(id, on) {
    const row = runs.rows.find(r => r.id === id);
    if (row) row.checkbox.checked = on;
    if (on && !runs.curves.has(id)) {
      runs.curves.set(id, (await cnn.getJson("/api/curves?run=" + encodeURIComponent(id))).records);
    }
    if (on) runs.shown.add(id); else runs.shown.delete(id);
    runs.draw();
  },

  draw() {
    const key = cnn.byId("curve-metric").value;
    const series = [...runs.shown].map(id => ({name: id, dots: true,
      points: runs.curves.get(id).filter(r => r[key] !== undefined).map(r => [r.epoch, r[key]])}));
    charts.draw(cnn.byId("runs-chart"), series, {xlabel: "epoch", ylog: key === "lr"});
  },

  async play(id) {
    const box = cnn.byId("play");
    box.replaceChildren(cnn.el("span", {class: "muted", text: `loading the snapshots of ${id}...`}));
    const frames = await cnn.getJson("/api/play?run=" + encodeURIComponent(id));
    if (!frames.epochs.length) {
      box.replaceChildren(cnn.el("span", {class: "muted", text: frames.hint}));
      return;
    }
    const slider = cnn.el("input", {type: "range", min: 0, max: frames.epochs.length - 1,
      value: 0, step: 1});
    const label = cnn.el("span", {class: "label"});
    const button = cnn.el("button", {text: "play"});
    const layers = frames.layers.map(layer => ({layer, figure: cnn.el("figure", {})}));
    const show = index => {
      label.textContent = `${id}: epoch ${frames.epochs[index]}`;
      for (const {layer, figure} of layers) {
        figure.replaceChildren(cnn.picture(layer.frames[index], 3, layer.name, 200),
          cnn.el("figcaption", {text: layer.name}));
      }
    };
    slider.addEventListener("input", () => show(Number(slider.value)));
    button.addEventListener("click", () => {
      clearInterval(runs.playTimer);
      let index = 0;
      runs.playTimer = setInterval(() => {
        slider.value = index;
        show(index);
        index += 1;
        if (index >= frames.epochs.length) clearInterval(runs.playTimer);
      }, 700);
    });
    box.replaceChildren(cnn.el("div", {class: "row"}, [button, slider, label]),
      cnn.el("div", {class: "row"}, layers.map(l => l.figure)));
    show(0);
  },
};
