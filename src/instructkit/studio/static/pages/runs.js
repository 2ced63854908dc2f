// The runs pages: the runs table (#/runs), one run (#/run?path=P) and 2–4 runs side by side
// (#/compare?path=a&path=b). Everything comes from /api/runs, /api/run and /api/compare; reports through
// /api/file (fetched with the key, shown in a sandboxed iframe's srcdoc).
"use strict";
(() => {
  const { el, fmt, when, duration, badge } = studio;
  const KINDS = ["run", "continual", "train", "generate", "curate"];
  const STATUSES = ["done", "incomplete", "running", "damaged"];
  const LOWER_IS_BETTER = /loss|perplexity|ppl|error|wer|cer|forgetting|rejected/i;
  const CSS = `
    .runs-notice { border:1px solid var(--accent); background:#eef3ff; border-radius:8px; padding:8px 12px; }
    ol.stages { list-style:none; padding:0; margin:0; display:flex; flex-wrap:wrap; gap:6px; }
    ol.stages li { border:1px solid var(--line); border-radius:6px; padding:4px 10px; background:#fff; font-size:14px; }
    ol.stages li[data-status=done] { border-color:var(--good); }
    ol.stages li[data-status=todo] { border-style:dashed; color:var(--muted); }
    ol.stages .when { display:block; font-size:12px; color:var(--muted); }
    td.pick, th.pick { width:2.5em; }
    td.pick input { width:1.1em; height:1.1em; margin:2px; }
    .metric-list { margin:0; padding:0; list-style:none; font-size:13px; }
    .metric-list li { white-space:nowrap; }
    iframe.report { width:100%; height:70vh; border:1px solid var(--line); border-radius:6px; background:#fff; }
    .changed td { max-width:28em; white-space:pre-wrap; word-break:break-word; }
    .swatch { display:inline-block; width:12px; height:12px; border-radius:2px; margin-right:6px; vertical-align:-1px; }
    .run-links { display:flex; flex-wrap:wrap; gap:4px 16px; margin:0 0 8px; padding:0; list-style:none; }
    .runs-sections { display:flex; flex-wrap:wrap; gap:4px 14px; margin:0 0 12px; font-size:14px; }
    table.rk tbody th { background:transparent; position:static; }
    .panel > h2:first-child { margin-top:0; }`;

  function addStyle() {
    if (document.getElementById("runs-page-style")) return;
    document.head.append(el("style", { id: "runs-page-style" }, CSS));
  }

  const hashOf = (name, pairs) => { const q = new URLSearchParams(pairs).toString(); return "#/" + name + (q ? "?" + q : ""); };
  const runHref = path => hashOf("run", [["path", path]]);
  const signed = d => (d === null || d === undefined ? "—" : (d > 0 ? "+" : "") + fmt(d));
  function deltaClass(name, d) {
    if (!d) return null;
    return (d < 0) === LOWER_IS_BETTER.test(name) ? "good" : "bad";
  }
  function value(v) {
    if (v === null) return "null";
    if (typeof v === "string") return v;
    if (typeof v === "number") return String(v);
    return JSON.stringify(v);
  }

  // A table with an id: head = [label | {text, cls}], rows = [{attrs, cells: [{text|node, cls, th}]}].
  function grid(id, head, rows, caption) {
    const th = h => el("th", { scope: "col", class: h.cls || null }, h.text !== undefined ? h.text : h);
    return el("div", { class: "scroll" }, el("table", { id, class: "rk" },
      caption ? el("caption", { class: "muted", style: "text-align:left" }, caption) : null,
      el("thead", {}, el("tr", {}, head.map(th))),
      el("tbody", {}, rows.map(r => el("tr", r.attrs || {}, r.cells.map(c =>
        el(c.th ? "th" : "td", Object.assign({ class: c.cls || null }, c.th ? { scope: "row" } : {}, c.attrs || {}), c.node || c.text)))))));
  }

  function headline(metrics) {
    const names = Object.keys(metrics || {}).slice(0, 3);
    if (!names.length) return "—";
    return el("ul", { class: "metric-list" }, names.map(n => {
      const m = metrics[n];
      return el("li", {}, n + " ", m.before === null ? fmt(m.after) : `${fmt(m.before)} → ${fmt(m.after)}`);
    }));
  }

  function jobNotice(job) {
    if (!job) return null;
    const id = job.id || job.job || "";
    return el("p", { class: "runs-notice", role: "status", id: "run-job" },
      "The studio is running a job on this run" + (job.kind ? ` (${job.kind}${job.stage ? ", at " + job.stage : ""})` : "") + ": ",
      el("a", { href: hashOf("train", [["job", id]]) }, "follow it on the Train page"), ".");
  }

  // ------------------------------------------------------------------------------- #/runs: the table
  studio.route("runs", async (main, params) => {
    addStyle();
    const selected = new Set(params.getAll("pick"));
    const kind = el("select", { id: "filter-kind" }, el("option", { value: "" }, "all kinds"), KINDS.map(k => el("option", { value: k }, k)));
    const status = el("select", { id: "filter-status" }, el("option", { value: "" }, "any status"), STATUSES.map(s => el("option", { value: s }, s)));
    const q = el("input", { id: "filter-q", type: "search", placeholder: "part of a path", autocomplete: "off" });
    kind.value = params.get("kind") || ""; status.value = params.get("status") || ""; q.value = params.get("q") || "";
    const count = el("p", { id: "runs-count", class: "muted", role: "status" });
    const holder = el("div", { id: "runs-table" });
    const hint = el("span", { id: "compare-hint", class: "muted" });
    const compare = el("button", { id: "compare", type: "button", disabled: true, onclick: () => {
      studio.go("compare", [...selected].map(p => ["path", p]));
    } }, "Compare");

    function updateCompare() {
      const n = selected.size;
      compare.disabled = n < 2 || n > 4;
      compare.textContent = n ? `Compare ${n} runs` : "Compare";
      hint.textContent = n < 2 ? "Tick 2 to 4 runs to compare them." : n > 4 ? "Compare takes at most 4 runs." : "";
    }

    let seq = 0;
    async function load() {
      const mine = ++seq;
      const filters = [["kind", kind.value], ["status", status.value], ["q", q.value.trim()]].filter(([, v]) => v);
      history.replaceState(null, "", hashOf("runs", filters));
      const data = await studio.api("/api/runs?" + new URLSearchParams(filters).toString());
      if (mine !== seq) return;  // a newer filter's answer is on its way
      count.textContent = `${data.runs.length} run folder${data.runs.length === 1 ? "" : "s"} under ${data.root}` +
        (filters.length ? (data.runs.length === 1 ? " matches" : " match") + " the filters" : "");
      const rows = data.runs.map((r, i) => {
        const box = el("input", { type: "checkbox", id: "pick-" + i, "data-path": r.path, onchange: e => {
          if (e.target.checked) selected.add(r.path); else selected.delete(r.path);
          updateCompare();
        } });
        box.checked = selected.has(r.path);
        return { attrs: { "data-path": r.path, "data-kind": r.kind, "data-status": r.status }, cells: [
          { cls: "pick", node: el("span", {}, box, el("label", { for: "pick-" + i, class: "skip" }, "compare " + r.path)) },
          { th: true, node: el("a", { href: runHref(r.path) }, r.path) },
          { text: r.kind },
          { node: el("span", {}, badge(r.status), r.note ? el("span", { class: "muted", title: r.note }, " " + r.note.slice(0, 60)) : null) },
          { text: r.stage || "—" },
          { node: headline(r.metrics) },
          { text: when(r.started) },
          { text: duration(r.seconds), cls: "num" },
        ] };
      });
      holder.replaceChildren(rows.length ? grid("runs", [{ text: "pick", cls: "pick" }, "run", "kind", "status", "stage",
        "metrics (before → after)", "started", { text: "duration", cls: "num" }], rows)
        : el("p", { class: "muted" }, "No run folder matches."));
      updateCompare();
    }

    let timer = null;
    const soon = () => { clearTimeout(timer); timer = setTimeout(() => load().catch(e => studio.showError(e, holder)), 200); };
    kind.addEventListener("change", soon); status.addEventListener("change", soon); q.addEventListener("input", soon);

    main.append(el("h1", { text: "Runs" }),
      el("form", { class: "toolbar", role: "search", "aria-label": "Filter runs", onsubmit: e => { e.preventDefault(); soon(); } },
        el("label", { for: "filter-kind" }, "Kind", kind),
        el("label", { for: "filter-status" }, "Status", status),
        el("label", { for: "filter-q" }, "Path contains", q)),
      count, holder,
      el("div", { class: "toolbar", style: "align-items:center;margin-top:12px" }, compare, hint));
    await load();
    return () => clearTimeout(timer);
  });

  // ---------------------------------------------------------------------------- #/run?path=P: one run
  function stagesList(stages) {
    return el("ol", { id: "stages", class: "stages" }, stages.map(s => el("li", { "data-stage": s.name, "data-status": s.status },
      el("strong", {}, s.name), " ", s.status === "done" ? el("span", { class: "good" }, "✓ done") : el("span", {}, "to do"),
      s.status === "done" ? el("span", { class: "when" }, `${s.seconds === null || s.seconds === undefined ? "" : fmt(s.seconds, 3) + " s · "}${when(s.finished)}`) : null)));
  }

  function metricsTable(rows) {
    if (!rows.length) return el("p", { class: "muted" }, "No metrics yet.");
    return grid("metrics", ["metric", { text: "before", cls: "num" }, { text: "after", cls: "num" }, { text: "difference", cls: "num" }],
      rows.map(m => ({ attrs: { "data-metric": m.name }, cells: [
        { th: true, text: m.name },
        { cls: "num before", text: fmt(m.before), attrs: { "data-value": m.before ?? "" } },
        { cls: "num after", text: fmt(m.after), attrs: { "data-value": m.after ?? "" } },
        { cls: "num delta " + (deltaClass(m.name, m.delta) || ""), text: signed(m.delta), attrs: { "data-value": m.delta ?? "" } },
      ] })));
  }

  function cardPanel(card, dataPath) {
    const a = card.accounting || {};
    const reasons = Object.entries(card.rejected_by_reason || {});
    return el("div", { id: "card-summary" },
      el("p", {}, el("strong", {}, `${fmt(a.in)} in = ${fmt(a.kept)} kept + ${fmt(a.rejected)} rejected`),
        a.balanced === false ? el("span", { class: "bad" }, " (NOT balanced)") : el("span", { class: "muted" }, " (balanced)"),
        card.stopped ? el("span", { class: "muted" }, ` · stopped: ${card.stopped}`) : null),
      card.steps.length ? grid("card-steps", ["step", { text: "in", cls: "num" }, { text: "kept", cls: "num" }, "dropped"],
        card.steps.map(s => ({ attrs: { "data-step": s.step }, cells: [{ th: true, text: s.step }, { cls: "num", text: fmt(s.in) },
          { cls: "num", text: fmt(s.kept) }, { text: Object.entries(s.dropped).map(([k, v]) => `${k} ${v}`).join(", ") || "—" }] }))) : null,
      reasons.length ? el("p", {}, "Rejected by reason: ", reasons.map(([k, v]) => `${k} ${v}`).join(", ")) : null,
      Object.keys(card.splits || {}).length ? el("p", { class: "muted" }, "Splits: " + Object.entries(card.splits).map(([k, v]) => `${k} ${v}`).join(", ")) : null,
      el("p", {}, el("a", { href: hashOf("data", [["path", dataPath]]), id: "data-link" }, "Browse the records and rejects on the Data page")));
  }

  function predictionsPanel(p) {
    if (p.note) return el("p", { class: "muted", id: "changed-count" }, p.note);
    const head = el("p", { id: "changed-count", "data-changed": p.changed, "data-total": p.total },
      `${p.changed} of ${p.total} predictions changed between before and after.`);
    if (!p.examples.length) return head;
    return el("div", {}, head, p.examples.length < p.changed ? el("p", { class: "muted" }, `The first ${p.examples.length} shown.`) : null,
      el("div", { class: "changed" }, grid("changed", ["prompt", "reference", "before", "after"], p.examples.map(e => ({
        attrs: { "data-id": e.id }, cells: [{ text: value(e.prompt) }, { text: value(e.reference) }, { text: value(e.before) }, { text: value(e.after) }] })))));
  }

  async function reportPanel(report) {
    const out = el("div", { id: "report-panel" });
    if (report.html) {
      const r = await studio.api("/api/file?path=" + encodeURIComponent(report.html), { raw: true });
      // sandbox with no allowances: the report's markup shows, nothing in it runs or reaches the studio
      out.append(el("iframe", { id: "report", class: "report", sandbox: "", title: "the run's report (report.html)", srcdoc: await r.text() }));
    }
    if (report.md) {
      const pre = el("pre", { id: "report-md" });
      const details = el("details", { open: !report.html }, el("summary", {}, "report.md"), pre);
      const fill = async () => { if (!pre.textContent) pre.textContent = await (await studio.api("/api/file?path=" + encodeURIComponent(report.md), { raw: true })).text(); };
      details.addEventListener("toggle", () => { if (details.open) fill().catch(e => studio.showError(e, details)); });
      if (!report.html) await fill();
      out.append(details);
    }
    if (!report.html && !report.md) out.append(el("p", { class: "muted" }, "No report yet (the run writes it last)."));
    return out;
  }

  studio.route("run", async (main, params) => {
    addStyle();
    const path = params.get("path");
    if (!path) {
      main.append(el("h1", { text: "Run" }), el("p", {}, "Pick a run on the ", el("a", { href: "#/runs" }, "Runs page"), "."));
      return;
    }
    const d = await studio.api("/api/run?path=" + encodeURIComponent(path));
    const s = d.summary;
    const section = (id, title, ...body) => el("section", { id, "aria-labelledby": id + "-h" }, el("h2", { id: id + "-h" }, title), ...body);
    const panel = (id, title, ...body) => { const p = section(id, title, ...body); p.classList.add("panel"); return p; };
    const parts = [];
    parts.push(section("sec-stages", "Stages", stagesList(d.stages)));
    const top = [panel("sec-metrics", d.kind === "run" ? "Metrics before → after" : "Metrics", metricsTable(d.metrics))];
    if (d.curves.length || ["run", "train", "continual"].includes(d.kind))
      top.push(panel("sec-loss", "Loss", el("div", { id: "loss-chart" }, studio.lineChart(d.curves.map(c => ({ name: c.name, points: c.points })), { ylabel: "loss" }))));
    parts.push(...top);
    if (d.predictions) parts.push(section("sec-changed", "Predictions that changed", predictionsPanel(d.predictions)));
    if (d.card) {
      const dataPath = d.card_path ? d.card_path.replace(/\/?card\.json$/, "") : d.path;
      parts.push(section("sec-data", d.kind === "run" ? "Data (its curation card)" : "Card", cardPanel(d.card, dataPath)));
    }
    parts.push(section("sec-config", "Config", d.config.text === null ? el("p", { class: "muted" }, "No config file.")
      : el("div", {}, el("p", { class: "muted" }, "From ", el("code", {}, d.config.file)), el("pre", { id: "config" }, d.config.text))));
    if (d.kind !== "generate" && d.kind !== "curate") parts.push(section("sec-report", "Report", await reportPanel(d.report)));

    main.append(
      el("p", {}, el("a", { href: "#/runs" }, "← Runs")),
      el("h1", {}, "Run ", el("code", {}, d.path), " ", badge(s.status)),
      el("p", { class: "muted" }, `${d.kind} · stage ${s.stage || "—"} · started ${when(s.started)} · took ${duration(s.seconds)}`,
        s.note ? el("span", { class: "bad" }, " · " + s.note) : null),
      jobNotice(d.job) || "",
      el("nav", { class: "runs-sections", "aria-label": "Sections" }, parts.map(p => el("a", { href: "#", onclick: e => {
        e.preventDefault(); p.scrollIntoView(); p.querySelector("h2").setAttribute("tabindex", "-1"); p.querySelector("h2").focus();
      } }, p.querySelector("h2").textContent))),
      parts[0], el("div", { class: "grid", style: "margin-top:16px" }, top), ...parts.slice(1 + top.length));
    if (!d.job) return null;
    // A job of the studio's is running here: its stages, metrics and loss follow it every few seconds (in
    // place, so the reader keeps their scroll position); when it ends, the whole page is drawn again.
    let timer = null, stopped = false;
    const tick = async () => {
      try {
        const n = await studio.api("/api/run?path=" + encodeURIComponent(path));
        if (stopped) return;
        if (!n.job) { studio.refresh(); return; }
        main.querySelector("#stages").replaceWith(stagesList(n.stages));
        const metrics = main.querySelector("#sec-metrics");
        metrics.replaceChildren(metrics.querySelector("h2"), metricsTable(n.metrics));
        const chart = main.querySelector("#loss-chart");
        if (chart) chart.replaceChildren(studio.lineChart(n.curves.map(c => ({ name: c.name, points: c.points })), { ylabel: "loss" }));
      } catch (err) { /* the next tick tries again */ }
      if (!stopped) timer = setTimeout(tick, 3000);
    };
    timer = setTimeout(tick, 3000);
    return () => { stopped = true; clearTimeout(timer); };
  });

  // ---------------------------------------------------------------- #/compare?path=a&path=b: side by side
  async function picker(main, chosen) {
    const data = await studio.api("/api/runs");
    const selected = new Set(chosen);
    const go = el("button", { type: "submit", id: "compare" }, "Compare");
    const sync = () => { go.disabled = selected.size < 2 || selected.size > 4; };
    const boxes = data.runs.map((r, i) => {
      const box = el("input", { type: "checkbox", id: "cmp-pick-" + i, "data-path": r.path, onchange: e => {
        if (e.target.checked) selected.add(r.path); else selected.delete(r.path); sync(); } });
      box.checked = selected.has(r.path);
      return el("li", {}, el("label", { for: "cmp-pick-" + i, style: "flex-direction:row;gap:6px;align-items:center;color:var(--fg)" }, box, r.path, " ", el("span", { class: "muted" }, r.kind)));
    });
    sync();
    main.append(el("form", { onsubmit: e => { e.preventDefault(); studio.go("compare", [...selected].map(p => ["path", p])); } },
      el("fieldset", {}, el("legend", {}, "Pick 2 to 4 runs"), el("ul", { class: "run-links", style: "flex-direction:column" }, boxes)), go));
  }

  studio.route("compare", async (main, params) => {
    addStyle();
    const paths = params.getAll("path");
    main.append(el("h1", { text: "Compare runs" }));
    if (paths.length === 0) { await picker(main, []); return; }
    let d;
    try { d = await studio.api("/api/compare?" + new URLSearchParams(paths.map(p => ["path", p])).toString()); }
    catch (err) { studio.showError(err, main); await picker(main, paths); return; }
    const color = i => studio.COLORS[i % studio.COLORS.length];
    main.append(el("ul", { class: "run-links", id: "compare-runs" }, d.runs.map((r, i) => el("li", {},
      el("span", { class: "swatch", style: "background:" + color(i) }), el("a", { href: runHref(r.path) }, r.path), " ", badge(r.status),
      i === 0 ? el("span", { class: "muted" }, " (baseline)") : null))));

    // metrics: per run before and after, and each later run's after minus the first's
    const head = ["metric"];
    d.runs.forEach((r, i) => {
      head.push({ text: `${r.path} before`, cls: "num" }, { text: `${r.path} after`, cls: "num" });
      if (i) head.push({ text: `${r.path} − ${d.runs[0].path}`, cls: "num" });
    });
    const rows = d.metrics.map(m => ({ attrs: { "data-metric": m.name }, cells: [{ th: true, text: m.name },
      ...m.values.flatMap((v, i) => [
        { cls: "num before", text: fmt(v.before), attrs: { "data-run": d.runs[i].path, "data-value": v.before ?? "" } },
        { cls: "num after", text: fmt(v.after), attrs: { "data-run": d.runs[i].path, "data-value": v.after ?? "" } },
        ...(i ? [{ cls: "num delta " + (deltaClass(m.name, v.delta) || ""), text: signed(v.delta), attrs: { "data-run": d.runs[i].path, "data-value": v.delta ?? "" } }] : []),
      ])] }));
    main.append(el("h2", {}, "Metrics"), d.metrics.length ? grid("compare-metrics", head, rows) : el("p", { class: "muted" }, "None of these runs has metrics yet."));

    // config: the dotted keys whose values differ
    main.append(el("h2", {}, "Config differences"));
    if (d.configs_missing.length) main.append(el("p", { class: "warn" }, "No readable config: " + d.configs_missing.join(", ")));
    main.append(d.config_diff.length
      ? grid("config-diff", ["key", ...d.runs.map(r => r.path)], d.config_diff.map(row => ({ attrs: { "data-key": row.key }, cells: [
        { th: true, node: el("code", {}, row.key) },
        ...row.values.map((v, i) => ({ text: value(v), cls: i && value(v) !== value(row.values[0]) ? "changed-value" : null, attrs: { "data-run": d.runs[i].path } })),
      ] })))
      : el("p", { id: "config-same" }, "The configs are the same."));
    // loss curves: one series per run
    const charts = [["loss", "Train loss"], ["eval_loss", "Eval loss"]].filter(([m]) => d.runs.some(r => r.curves[m].length));
    main.append(el("h2", {}, "Loss"), charts.length ? el("div", { class: "grid", id: "compare-loss" }, charts.map(([m, title]) =>
      el("div", { class: "panel", "data-curve": m }, el("h3", { style: "margin:0 0 6px;font-size:1rem" }, title),
        studio.lineChart(d.runs.map((r, i) => ({ name: r.path, points: r.curves[m], color: color(i) })), { ylabel: title })))) : el("p", { class: "muted" }, "No loss logged."));

  });
})();
