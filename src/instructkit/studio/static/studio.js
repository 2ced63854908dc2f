// instructkit studio: the page shell. Routes (#/name?query), the API helper (sends the key), DOM and chart
// helpers the page scripts in pages/*.js share. No build step, no framework.
"use strict";
const studio = (() => {
  const routes = {};
  const NAV_OF = { run: "runs" };  // pages reached from another page's nav entry
  const COLORS = ["#2454c5", "#d1495b", "#1b7f3b", "#8a5a00", "#6a3fb5", "#00798c"];

  function route(name, render) { routes[name] = render; }

  function parseHash() {
    const h = location.hash.replace(/^#\/?/, "");
    const [name, query] = h.split("?");
    return { name: name || "runs", params: new URLSearchParams(query || "") };
  }

  function go(name, params) {
    const q = params ? new URLSearchParams(params).toString() : "";
    location.hash = "#/" + name + (q ? "?" + q : "");
  }

  function key() { return sessionStorage.getItem("studio-key") || ""; }

  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || ("HTTP " + status));
      this.status = status; this.field = e.field || null; this.code = e.code || null;
    }
  }

  async function api(path, opts = {}) {
    const headers = Object.assign({}, opts.headers || {});
    if (key()) headers["Authorization"] = "Bearer " + key();
    if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
    const r = await fetch(path, Object.assign({}, opts, { headers }));
    if (opts.raw) { if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null)); return r; }
    const body = await r.json().catch(() => null);
    if (!r.ok) { if (r.status === 401) askKey(); throw new ApiError(r.status, body); }
    return body;
  }

  // Server-sent events over fetch (EventSource cannot send the key, nor POST): calls onEvent(type, data) per
  // event until the stream ends or signal aborts; opts are api()'s (method, json) for a POST stream.
  async function events(path, onEvent, signal, opts = {}) {
    const r = await api(path, Object.assign({}, opts, { raw: true, signal }));
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
        let type = "message", data = "";
        for (const line of chunk.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data) onEvent(type, JSON.parse(data));
      }
    }
  }

  // el("a", {href: "#", class: "x", onclick: f}, "text", child, ...)
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (k === "text") n.textContent = v;
      else n.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) n.append(c instanceof Node ? c : String(c));
    return n;
  }

  function fmt(x, digits = 4) {
    if (x === null || x === undefined) return "—";
    if (typeof x !== "number") return String(x);
    if (Number.isInteger(x)) return x.toLocaleString("en");
    return Math.abs(x) >= 1000 ? x.toFixed(1) : x.toPrecision(digits).replace(/\.?0+$/, "");
  }
  function when(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) : "—"; }
  function duration(s) {
    if (s === null || s === undefined) return "—";
    s = Math.round(s); const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
  }
  function badge(status) { return el("span", { class: "badge " + status, text: status }); }
  function table(head, rows, numeric = []) {
    return el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: numeric.includes(i) ? "num" : null, scope: "col" }, h)))),
      el("tbody", {}, rows.map(r => el("tr", {}, r.map((c, i) => el("td", { class: numeric.includes(i) ? "num" : null }, c)))))));
  }

  // A line chart of series [{name, points: [[x, y], ...]}] as SVG, with a legend.
  function lineChart(series, { width = 640, height = 260, xlabel = "step", ylabel = "" } = {}) {
    const ns = "http://www.w3.org/2000/svg";
    const pts = series.flatMap(s => s.points);
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`); svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img"); svg.setAttribute("aria-label", `${ylabel || "value"} by ${xlabel}: ` + series.map(s => s.name).join(", "));
    const wrap = el("div", {}, svg);
    if (!pts.length) { wrap.append(el("p", { class: "muted", text: "no points yet" })); return wrap; }
    const [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
    const [y0, y1] = [Math.min(...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
    const L = 48, R = 10, T = 10, B = 28;
    const sx = x => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - L - R);
    const sy = y => T + (y1 === y0 ? 0.5 : 1 - (y - y0) / (y1 - y0)) * (height - T - B);
    const add = (tag, attrs, text) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text !== undefined) n.textContent = text; svg.append(n); return n; };
    add("line", { x1: L, y1: height - B, x2: width - R, y2: height - B, stroke: "#999" });
    add("line", { x1: L, y1: T, x2: L, y2: height - B, stroke: "#999" });
    // enough digits that the three labels differ: a loss going 10.79 -> 10.72 must not read 10.8, 10.8, 10.7
    const span = Math.abs(y1 - y0), big = Math.max(Math.abs(y0), Math.abs(y1));
    const digits = span > 0 && big > 0 ? Math.min(8, Math.max(3, Math.ceil(Math.log10(big / span)) + 2)) : 3;
    for (const y of [y0, (y0 + y1) / 2, y1]) add("text", { x: 4, y: sy(y) + 4 }, fmt(y, digits));
    for (const x of [x0, x1]) add("text", { x: sx(x) - 8, y: height - 8 }, fmt(x, 4));
    add("text", { x: width / 2, y: height - 8 }, xlabel);
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const d = s.points.map((p, j) => (j ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
      add("path", { d, fill: "none", stroke: s.color || COLORS[i % COLORS.length], "stroke-width": 2, "data-series": s.name });
    });
    wrap.append(el("div", { class: "legend" }, series.map((s, i) => el("span", {}, el("i", { style: "background:" + (s.color || COLORS[i % COLORS.length]) }), s.name))));
    return wrap;
  }

  // Horizontal bars [{label, value, color?}] as SVG (counts per step or reason).
  function barChart(items, { width = 640, label = "count" } = {}) {
    const ns = "http://www.w3.org/2000/svg";
    const row = 22, L = 190, height = Math.max(row * items.length + 8, 30);
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`); svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img"); svg.setAttribute("aria-label", label + ": " + items.map(i => `${i.label} ${i.value}`).join(", "));
    const max = Math.max(1, ...items.map(i => i.value));
    items.forEach((it, k) => {
      const y = 4 + k * row;
      const t = document.createElementNS(ns, "text"); t.setAttribute("x", 4); t.setAttribute("y", y + 15); t.textContent = it.label.length > 28 ? it.label.slice(0, 27) + "…" : it.label; svg.append(t);
      const r = document.createElementNS(ns, "rect"); r.setAttribute("x", L); r.setAttribute("y", y + 3); r.setAttribute("height", row - 8);
      r.setAttribute("width", Math.max(1, (it.value / max) * (width - L - 60))); r.setAttribute("fill", it.color || COLORS[k % COLORS.length]); svg.append(r);
      const v = document.createElementNS(ns, "text"); v.setAttribute("x", L + Math.max(1, (it.value / max) * (width - L - 60)) + 6); v.setAttribute("y", y + 15); v.textContent = fmt(it.value); svg.append(v);
    });
    return svg;
  }

  function askKey() {
    const main = document.getElementById("main");
    const input = el("input", { id: "api-key", type: "password", autocomplete: "off" });
    main.replaceChildren(el("h1", { text: "API key" }),
      el("form", { class: "toolbar", onsubmit: e => { e.preventDefault(); sessionStorage.setItem("studio-key", input.value); render(); } },
        el("label", { for: "api-key" }, "This studio wants its API key", input), el("button", { type: "submit", text: "Use key" })));
    input.focus();
  }

  function showError(err, where) {
    (where || document.getElementById("main")).append(el("p", { class: "error", role: "alert", text: err.message || String(err) }));
  }

  let current = null;  // the page's cleanup (an open event stream)
  async function render() {
    if (current) { try { current(); } catch (e) { /* already gone */ } current = null; }
    const { name, params } = parseHash();
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === (NAV_OF[name] || name)) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    const main = document.getElementById("main");
    main.replaceChildren();
    const page = routes[name];
    if (!page) { main.append(el("h1", { text: "Not found" }), el("p", {}, "No page ", el("code", {}, name), ".")); return; }
    main.dataset.page = name; main.dataset.state = "loading";
    try { current = (await page(main, params)) || null; }
    catch (err) { showError(err, main); }
    main.dataset.state = "ready";
  }

  function start() { window.addEventListener("hashchange", render); render(); }

  return { route, go, refresh: render, api, events, el, fmt, when, duration, badge, table, lineChart, barChart, showError, start, COLORS };
})();
