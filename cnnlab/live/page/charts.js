// Line charts on a <canvas>: several series on shared axes, drawn without any library.
"use strict";

const charts = {
  colours: ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#7f7f7f", "#bcbd22"],

  // series: [{name, points: [[x, y], ...], colour, width, dots}]; options: {xlabel, ylog}
  draw(canvas, series, options = {}) {
    const ctx = canvas.getContext("2d");
    const width = canvas.width, height = canvas.height;
    const left = 56, right = 12, top = 10, bottom = 34;
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    const points = series.flatMap(s => s.points).filter(([x, y]) => Number.isFinite(x)
      && Number.isFinite(y) && (!options.ylog || y > 0));
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#666";
    if (!points.length) {
      ctx.fillText("waiting for data", width / 2 - 40, height / 2);
      return;
    }
    const ty = y => options.ylog ? Math.log10(y) : y;
    let [x0, x1] = charts.extent(points.map(p => p[0]));
    let [y0, y1] = charts.extent(points.map(p => ty(p[1])));
    if (x0 === x1) x1 = x0 + 1;
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const sx = x => left + (x - x0) / (x1 - x0) * (width - left - right);
    const sy = y => top + (1 - (ty(y) - y0) / (y1 - y0)) * (height - top - bottom);
    charts.axes(ctx, {x0, x1, y0, y1, left, right, top, bottom, width, height}, options);
    series.forEach((s, i) => {
      const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)
        && (!options.ylog || y > 0));
      ctx.strokeStyle = ctx.fillStyle = s.colour || charts.colours[i % charts.colours.length];
      ctx.lineWidth = s.width || 1.5;
      ctx.beginPath();
      good.forEach(([x, y], j) => j ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y)));
      ctx.stroke();
      if (s.dots || good.length === 1) {
        good.forEach(([x, y]) => ctx.fillRect(sx(x) - 2, sy(y) - 2, 4, 4));
      }
    });
    charts.legend(ctx, series, left + 8, top + 4);
  },

  extent(values) {
    let low = Infinity, high = -Infinity;
    for (const v of values) { if (v < low) low = v; if (v > high) high = v; }
    return [low, high];
  },

  axes(ctx, box, options) {
    const {x0, x1, y0, y1, left, right, top, bottom, width, height} = box;
    ctx.strokeStyle = "#ccc";
    ctx.fillStyle = "#555";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = top + i / 4 * (height - top - bottom);
      const value = y1 - i / 4 * (y1 - y0);
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(width - right, y); ctx.stroke();
      ctx.fillText(cnn.num(options.ylog ? 10 ** value : value), 2, y + 4);
      const x = left + i / 4 * (width - left - right);
      const at = x0 + i / 4 * (x1 - x0);  // whole steps/epochs unless the range is short
      ctx.fillText(cnn.num(x1 - x0 >= 4 ? Math.round(at) : at), x - 10, height - bottom + 14);
    }
    ctx.fillText(options.xlabel || "", (width - left) / 2, height - 4);
  },

  legend(ctx, series, x, y) {
    series.filter(s => s.name).forEach((s, i) => {
      ctx.fillStyle = s.colour || charts.colours[i % charts.colours.length];
      ctx.fillRect(x, y + i * 14, 10, 3);
      ctx.fillStyle = "#333";
      ctx.fillText(s.name, x + 14, y + i * 14 + 5);
    });
  },

  // Moving average over the last `window` points (the demo's windowed loss and accuracy).
  smooth(points, window) {
    const out = [];
    let sum = 0;
    points.forEach(([x, y], i) => {
      sum += y;
      if (i >= window) sum -= points[i - window][1];
      out.push([x, sum / Math.min(i + 1, window)]);
    });
    return out;
  },
};
