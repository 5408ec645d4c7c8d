// Shared helpers of the cnnlab page: the token, DOM building, number formatting, requests.
// Everything stays on this server: no external script, font or image (the page works offline).
"use strict";

const cnn = {
  // The token comes in the address fragment (#token=...), which is never sent to a server.
  token: new URLSearchParams(location.hash.slice(1)).get("token") || "",
  info: {},

  el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (value !== null && value !== undefined) node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  },

  byId(id) { return document.getElementById(id); },

  // 0.0012345 -> "0.00123", 1234567 -> "1,234,567"; null (NaN/inf on the server) -> "-".
  num(value, digits = 3) {
    if (value === null || value === undefined || Number.isNaN(value)) return "-";
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    const size = Math.abs(value);
    if (size !== 0 && (size < 1e-3 || size >= 1e5)) return value.toExponential(digits - 1);
    return value.toPrecision(digits);
  },

  percent(value) {
    return value === null || value === undefined ? "-" : (100 * value).toFixed(1) + "%";
  },

  async getJson(url) {
    const answer = await fetch(url, {cache: "no-store"});
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || answer.statusText);
    return body;
  },

  // A state-changing request: the token in a header (a cross-site page cannot send it).
  async post(url, body, type) {
    const answer = await fetch(url, {method: "POST", body,
      headers: {"Content-Type": type, "X-Cnnlab-Token": cnn.token}});
    let parsed = {};
    try { parsed = await answer.json(); } catch (error) { parsed = {error: answer.statusText}; }
    if (!answer.ok) throw new Error(parsed.error || `HTTP ${answer.status}`);
    return parsed;
  },

  // An <img> that keeps its pixels sharp when scaled up (maps are a few pixels wide): a whole
  // number of screen pixels per image pixel, at least `scale`, at least `minWidth` wide and
  // `minHeight` high (a row of 5x5 filters would otherwise be a thin line).
  picture(src, scale = 2, title = "", minWidth = 0, minHeight = 0) {
    const img = cnn.el("img", {src, title, alt: title, class: "pixels"});
    img.addEventListener("load", () => {
      const times = Math.max(scale, Math.ceil(minWidth / img.naturalWidth),
                             Math.ceil(minHeight / img.naturalHeight));
      img.style.width = img.naturalWidth * times + "px";
    });
    return img;
  },

  // Three probability bars: green for the true class, red for the others.
  bars(top, label) {
    return cnn.el("div", {class: "bars"}, top.map(([name, p]) => {
      const fill = cnn.el("span", {class: "fill " + (name === label ? "right" : "wrong")});
      fill.style.width = Math.max(1, 100 * p).toFixed(1) + "%";
      return cnn.el("div", {class: "bar"}, [fill, cnn.el("span", {class: "text",
        text: `${name} ${(100 * p).toFixed(1)}%`})]);
    }));
  },
};
