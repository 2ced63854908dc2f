// The Data pages: #/data lists every data folder under --runs; #/data?path=P shows one folder's card
// accounting, its rejects by step and reason (each beside the record it duplicated or the benchmark item
// it leaked from), duplicate clusters, length and turn histograms, and a record's loss mask for a model.
"use strict";
(() => {
  const { el, fmt } = studio;
  const PAGE = 50;
  const CSS = `
    .data-sum { font-size:1.05rem; margin:0 0 10px; }
    .data-sum b { font-variant-numeric:tabular-nums; }
    .rejects { list-style:none; padding:0; margin:0; display:flex; flex-direction:column; gap:10px; }
    .reject { display:grid; grid-template-columns:minmax(0,1fr) minmax(0,1fr); gap:10px; background:var(--panel);
              border:1px solid var(--line); border-radius:8px; padding:10px; }
    .reject.single { grid-template-columns:minmax(0,1fr); }
    .reject h3, .cluster h3 { font-size:.95rem; margin:0 0 6px; grid-column:1 / -1; }
    .reject .why { color:var(--bad); font-weight:600; }
    .side { min-width:0; }
    .side h4 { font-size:13px; margin:0 0 4px; color:var(--muted); font-weight:600; }
    .rec { background:#fff; border:1px solid var(--line); border-radius:6px; padding:6px 8px; font-size:13px;
           max-height:260px; overflow:auto; }
    .rec .turn { margin:0 0 6px; } .rec .turn:last-child { margin:0; }
    .rec .role { font-size:11px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); display:block; }
    .rec .txt { white-space:pre-wrap; word-break:break-word; font-family:ui-monospace, Menlo, Consolas, monospace; }
    .clusters { list-style:none; padding:0; margin:0; display:flex; flex-direction:column; gap:10px; }
    .cluster { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:10px; }
    .cluster .members { display:grid; gap:8px; grid-template-columns:repeat(auto-fit, minmax(260px, 1fr)); }
    .cluster .kept-rec .rec { border-color:var(--good); }
    .pager { display:flex; gap:8px; align-items:center; margin:10px 0; flex-wrap:wrap; }
    #mask-tokens { white-space:pre-wrap; word-break:break-all; font-family:ui-monospace, Menlo, Consolas, monospace;
                   font-size:13px; line-height:1.7; background:#fff; border:1px solid var(--line); border-radius:6px;
                   padding:8px; max-height:420px; overflow:auto; }
    #mask .trained, .mask-legend .is-trained { background:#c9f0d3; color:#0b3d1b; border-bottom:2px solid var(--good); }
    #mask .context, .mask-legend .is-context { color:#8a93a3; }
    .mask-legend .is-trained, .mask-legend .is-context { padding:0 4px; border-radius:3px; }
    .hist h3, .panel-h { font-size:1rem; margin:0 0 6px; }
    #accounting .panel table { font-size:12px; } .acc-grid { grid-template-columns:repeat(auto-fit, minmax(300px, 1fr)); align-items:start; } #accounting .panel th, #accounting .panel td { padding:3px 6px; }
    @media (max-width: 600px) { .reject { grid-template-columns:minmax(0,1fr); } }
  `;

  function style() {
    if (document.getElementById("data-page-style")) return;
    document.head.append(el("style", { id: "data-page-style" }, CSS));
  }

  const href = (params) => "#/data?" + new URLSearchParams(params).toString();
  const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();

  // A record as the API's view gives it: chat turns, a text (+ label), or the raw text a reader refused.
  function recordView(view, empty = "(empty)") {
    const box = el("div", { class: "rec" });
    if (view && view.messages) {
      for (const m of view.messages) box.append(el("div", { class: "turn" }, el("span", { class: "role", text: m.role }), el("span", { class: "txt", text: m.content || empty })));
    } else if (view && view.text !== undefined) {
      box.append(el("span", { class: "txt", text: view.text || empty }));
      if (view.label !== undefined) box.append(el("div", { class: "muted" }, "label: ", String(view.label)));
    } else if (view && view.raw !== undefined) {
      box.append(el("span", { class: "role", text: "raw input" }), el("span", { class: "txt", text: view.raw || empty }));
    } else box.append(el("span", { class: "muted", text: "(no record)" }));
    return box;
  }

  function keptWhere(k) {
    if (k.where === "kept") return [`kept record ${k.id} — `, el("span", {}, `${k.split} #${k.index}`)];
    if (k.where === "rejected") return [`record ${k.id}, rejected later by `, el("code", {}, k.step), ` (${k.reason})`];
    return [`record ${k.id} — not in the splits`];
  }

  function matchView(m) {
    if (!m) return null;
    if (m.kind === "duplicate") return el("div", { class: "side match", "data-match": "duplicate" }, el("h4", {}, "Duplicate of: ", ...keptWhere(m)), recordView(m.view, "(not found)"));
    if (m.kind === "benchmark") {
      return el("div", { class: "side match", "data-match": "benchmark" },
        el("h4", {}, "Leaked from ", el("strong", {}, m.benchmark), " ", el("code", {}, m.item)),
        el("p", { class: "muted", style: "margin:0 0 4px;font-size:13px" }, "shared n-gram: ", el("code", {}, m.ngram)),
        m.text ? recordView({ text: m.text }) : el("p", { class: "muted", text: "(the benchmark file is not under the runs folder)" }));
    }
    if (m.kind === "similar") return el("div", { class: "side match", "data-match": "similar" }, el("h4", {}, `Too similar (ROUGE-L ${fmt(m.score, 3)}) to:`), recordView({ text: m.text }));
    return null;
  }

  // ---------------------------------------------------------------------------------------- the listing
  async function listing(main) {
    main.append(el("h1", { text: "Data" }));
    const data = await studio.api("/api/data");
    main.append(el("p", { class: "muted", text: `${data.folders.length} data folders (curated or generated) under ${data.root}` }));
    if (!data.folders.length) { main.append(el("p", {}, "No folder with a card.json yet: run ", el("code", {}, "instructkit data curate"), " or ", el("code", {}, "instructkit generate"), ".")); return; }
    main.append(studio.table(["folder", "kind", "run", "in", "kept", "rejected", "balanced", "splits"],
      data.folders.map(f => [
        el("a", { href: href({ path: f.path }) }, f.path), f.kind, f.run ? el("a", { href: "#/run?" + q({ path: f.run }) }, f.run) : "—",
        fmt(f.in), fmt(f.kept), fmt(f.rejected),
        f.balanced ? el("span", { class: "good", "aria-label": "balanced" }, "✓") : el("span", { class: "bad", "aria-label": "not balanced" }, "⚠"),
        Object.entries(f.splits).map(([k, v]) => `${k} ${v}`).join(", "),
      ]), [3, 4, 5]));
  }

  // ---------------------------------------------------------------------------------------- accounting
  function accountingSection(acc) {
    const sec = el("section", { id: "accounting", "aria-labelledby": "acc-h", "data-in": acc.in, "data-kept": acc.kept, "data-rejected": acc.rejected, "data-balanced": acc.balanced ? "true" : "false" });
    const mark = acc.balanced ? el("span", { class: "good" }, " ✓ balanced") : el("span", { class: "bad", role: "alert" }, " ⚠ does not balance: in ≠ kept + rejected");
    sec.append(el("h2", { id: "acc-h", text: "Accounting" }),
      el("p", { class: "data-sum" }, el("b", {}, fmt(acc.in)), ` ${acc.unit}s in = `, el("b", {}, fmt(acc.kept)), " kept + ", el("b", {}, fmt(acc.rejected)), " rejected", mark,
        acc.generator ? el("span", { class: "muted" }, ` — generator ${acc.generator}`, acc.stopped ? `, stopped: ${acc.stopped}` : "") : ""));
    const reasons = Object.entries(acc.rejected_by_reason);
    const chart = (items, label) => studio.barChart(items, { label, width: 440 });
    const grid = el("div", { class: "grid acc-grid" },
      el("div", { class: "panel" }, el("h3", { class: "panel-h" }, "In = kept + rejected"),
        chart([{ label: "in", value: acc.in || 0, color: "#5b6475" }, { label: "kept", value: acc.kept || 0, color: "#1b7f3b" }, { label: "rejected", value: acc.rejected || 0, color: "#b3261e" }], acc.unit + "s")),
      el("div", { class: "panel" }, el("h3", { class: "panel-h" }, "Rejected, by reason"),
        reasons.length ? chart(reasons.map(([label, value]) => ({ label, value, color: "#b3261e" })), "rejected by reason") : el("p", { class: "muted", text: "nothing rejected" })),
      el("div", { class: "panel" }, el("h3", { class: "panel-h" }, "Per step"),
        studio.table(["step", "in", "kept", "dropped (by reason)"],
          acc.steps.map(s => [s.step, fmt(s.in), fmt(s.kept), Object.entries(s.dropped).map(([k, v]) => `${k} ${v}`).join(", ") || "—"]), [1, 2])));
    sec.append(grid);
    return sec;
  }

  // ---------------------------------------------------------------------------------------- rejects
  function rejectsSection(path, acc, chosen = {}) {
    const stepSel = el("select", { id: "reject-step" }, el("option", { value: "" }, `all steps (${fmt(acc.rejected)})`),
      acc.steps.filter(s => Object.keys(s.dropped).length).map(s => el("option", { value: s.step }, `${s.step} (${fmt(Object.values(s.dropped).reduce((a, b) => a + b, 0))})`)));
    const reasonSel = el("select", { id: "reject-reason" });
    const count = el("output", { id: "reject-count", for: "reject-step reject-reason", "aria-live": "polite" }, "…");
    const expected = el("span", { class: "muted" });
    const list = el("ol", { class: "rejects", id: "reject-list" });
    const prev = el("button", { type: "button", class: "secondary", id: "reject-prev" }, "← previous");
    const next = el("button", { type: "button", class: "secondary", id: "reject-next" }, "next →");
    const where = el("span", { class: "muted", id: "reject-page" });
    let offset = 0;

    function fillReasons() {
      const step = stepSel.value;
      const counts = step ? (acc.steps.find(s => s.step === step) || { dropped: {} }).dropped : acc.rejected_by_reason;
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      reasonSel.replaceChildren(el("option", { value: "" }, `all reasons (${fmt(total)})`),
        ...Object.entries(counts).map(([r, n]) => el("option", { value: r }, `${r} (${fmt(n)})`)));
    }

    async function load() {
      count.textContent = "…"; list.setAttribute("aria-busy", "true");
      const params = { path, step: stepSel.value, reason: reasonSel.value, offset, limit: PAGE };
      let data;
      try { data = await studio.api("/api/data/rejects?" + q(params)); }
      catch (err) { list.replaceChildren(el("li", { class: "error", role: "alert", text: err.message })); return; }
      finally { list.removeAttribute("aria-busy"); }
      count.textContent = String(data.total);
      count.dataset.count = String(data.total);
      expected.replaceChildren(data.expected === data.total ? el("span", { class: "good" }, ` matching rejects — the card says ${fmt(data.expected)} ✓`)
        : el("span", { class: "bad" }, ` matching rejects — the card says ${fmt(data.expected)} ⚠`));
      list.replaceChildren(...data.items.map(item => {
        const side = matchView(item.match);
        const title = el("h3", {}, el("span", { class: "why" }, item.reason), " at step ", el("code", {}, item.step || "?"),
          item.detail ? el("span", { class: "muted" }, " — ", item.detail) : null,
          el("span", { class: "muted", style: "font-weight:normal" }, ` · rejects.jsonl line ${item.line}`, item.id ? ` · id ${item.id}` : "",
            item.where && item.where.line ? ` · input line ${item.where.line}` : "", item.counted === false ? " · not counted in the accounting" : ""));
        const own = el("div", { class: "side" }, el("h4", {}, "Rejected record"), recordView(item.view));
        if (item.instruction) own.prepend(el("p", { class: "muted", style: "margin:0 0 4px;font-size:13px" }, "instruction: ", item.instruction));
        return el("li", { class: "reject" + (side ? "" : " single"), "data-reason": item.reason, "data-step": item.step || "" }, title, own, side);
      }));
      if (!data.items.length) list.append(el("li", { class: "muted", text: "No rejects match." }));
      prev.disabled = offset === 0;
      next.disabled = offset + PAGE >= data.total;
      where.textContent = data.total ? `${offset + 1}–${Math.min(offset + PAGE, data.total)} of ${data.total}` : "";
    }

    // The chosen step and reason live in the URL too (replaced, not pushed: no page load), so a filtered
    // view can be bookmarked, shared, and is back after a reload.
    function remember() {
      history.replaceState(null, "", href(Object.fromEntries(Object.entries({ path, step: stepSel.value, reason: reasonSel.value }).filter(([, v]) => v))));
    }
    stepSel.addEventListener("change", () => { fillReasons(); offset = 0; remember(); load(); });
    reasonSel.addEventListener("change", () => { offset = 0; remember(); load(); });
    prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
    next.addEventListener("click", () => { offset += PAGE; load(); });
    if (chosen.step && [...stepSel.options].some(o => o.value === chosen.step)) stepSel.value = chosen.step;
    fillReasons();
    if (chosen.reason && [...reasonSel.options].some(o => o.value === chosen.reason)) reasonSel.value = chosen.reason;
    const sec = el("section", { id: "rejects", "aria-labelledby": "rej-h" },
      el("h2", { id: "rej-h", text: "Rejects" }),
      el("div", { class: "toolbar" }, el("label", { for: "reject-step" }, "Step", stepSel), el("label", { for: "reject-reason" }, "Reason", reasonSel)),
      el("p", {}, el("strong", {}, count), expected),
      list, el("div", { class: "pager" }, prev, next, where));
    sec.ready = load();
    return sec;
  }

  // ---------------------------------------------------------------------------------------- clusters
  async function clustersSection(path) {
    const sec = el("section", { id: "clusters", "aria-labelledby": "cl-h" }, el("h2", { id: "cl-h", text: "Duplicate clusters" }));
    const data = await studio.api("/api/data/clusters?" + q({ path, limit: 20 }));
    sec.dataset.total = String(data.total);
    if (!data.total) { sec.append(el("p", { class: "muted", text: "No exact or near duplicates were found." })); return sec; }
    sec.append(el("p", { class: "muted", text: `${data.total} clusters: each kept record with the records dropped as its duplicates${data.total > data.items.length ? ` (largest ${data.items.length} shown)` : ""}.` }));
    sec.append(el("ol", { class: "clusters" }, data.items.map(c => el("li", { class: "cluster", "data-size": c.size },
      el("h3", {}, `${c.size} records`, el("span", { class: "muted", style: "font-weight:normal" }, " — ", ...keptWhere(c.kept))),
      el("div", { class: "members" },
        el("div", { class: "side kept-rec" }, el("h4", {}, "kept"), recordView(c.kept.view, "(not found)")),
        c.members.map(m => el("div", { class: "side member" }, el("h4", {}, m.reason, m.line ? ` · line ${m.line}` : ` · ${m.split} #${m.index}`), recordView(m.view)))),
      c.size - 1 > c.members.length ? el("p", { class: "muted", text: `… and ${fmt(c.size - 1 - c.members.length)} more duplicates of it (in the rejects above)` }) : null))));
    return sec;
  }

  // A histogram of bins [{lo, hi, count}] as vertical bars (SVG), each bar's count above it.
  function histChart(bins, { label = "count", color = "#2454c5", width = 360, height = 150 } = {}) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`); svg.setAttribute("class", "chart");
    const name = b => (b.lo === b.hi ? String(b.lo) : `${b.lo}–${b.hi}`);
    svg.setAttribute("role", "img"); svg.setAttribute("aria-label", label + ": " + bins.map(b => `${name(b)}: ${b.count}`).join(", "));
    if (!bins.length) return el("p", { class: "muted", text: "no records" });
    const add = (tag, attrs, text) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text !== undefined) n.textContent = text; svg.append(n); return n; };
    const L = 6, R = 6, T = 16, B = 20, max = Math.max(1, ...bins.map(b => b.count));
    const w = (width - L - R) / bins.length, every = Math.ceil(bins.length / 8);
    add("line", { x1: L, y1: height - B, x2: width - R, y2: height - B, stroke: "#999" });
    bins.forEach((b, i) => {
      const h = (b.count / max) * (height - T - B), x = L + i * w;
      const r = add("rect", { x: x + 1, y: height - B - h, width: Math.max(1, w - 2), height: h, fill: color, "data-count": b.count });
      r.append(document.createElementNS(ns, "title")); r.lastChild.textContent = `${name(b)}: ${b.count}`;
      if (b.count) add("text", { x: x + w / 2, y: height - B - h - 3, "text-anchor": "middle" }, fmt(b.count));
      if (i % every === 0) add("text", { x: x + w / 2, y: height - 6, "text-anchor": "middle" }, name(b));
    });
    return svg;
  }

  // ---------------------------------------------------------------------------------------- histograms
  async function histogramSection(path) {
    const sec = el("section", { id: "histograms", "aria-labelledby": "hi-h" }, el("h2", { id: "hi-h", text: "Lengths and turns of the kept records" }));
    const data = await studio.api("/api/data/histograms?" + q({ path }));
    const grid = el("div", { class: "grid" });
    for (const [split, h] of Object.entries(data.splits)) {
      grid.append(el("div", { class: "panel hist", "data-split": split, "data-records": h.records },
        el("h3", {}, `${split}: ${fmt(h.records)} records`),
        el("p", { class: "muted", style: "margin:0 0 4px;font-size:13px" }, "words per record"),
        histChart(h.words, { label: `${split}: words per record`, color: "#2454c5", height: 120 }),
        el("p", { class: "muted", style: "margin:8px 0 4px;font-size:13px" }, "user turns per record"),
        histChart(h.turns, { label: `${split}: user turns per record`, color: "#00798c", height: 80 })));
    }
    sec.append(grid);
    return sec;
  }

  // ---------------------------------------------------------------------------------------- loss mask
  function maskSection(path, acc, defaultModel) {
    const splits = Object.keys(acc.splits);
    const split = el("select", { id: "mask-split" }, splits.map(s => el("option", { value: s }, `${s} (${fmt(acc.splits[s])})`)));
    const index = el("input", { id: "mask-index", type: "number", min: 0, value: 0, inputmode: "numeric", style: "width:7em" });
    const model = el("input", { id: "mask-model", type: "text", list: "mask-models", value: defaultModel, autocomplete: "off", style: "min-width:18em" });
    const models = el("datalist", { id: "mask-models" });
    const maxLen = el("input", { id: "mask-max-length", type: "number", min: 8, placeholder: "the run's", style: "width:8em" });
    const err = el("p", { class: "field-error", id: "mask-error", role: "alert" });
    const out = el("div", { id: "mask-out" });
    const go = el("button", { type: "submit", id: "mask-show" }, "Show mask");
    studio.api("/api/data/models").then(d => models.replaceChildren(...d.models.map(m => el("option", { value: m.value }, m.label)))).catch(() => {});

    async function show(e) {
      if (e) e.preventDefault();
      err.textContent = ""; go.disabled = true; out.replaceChildren(el("p", { class: "muted", text: "tokenizing…" }));
      for (const i of [index, model, maxLen, split]) i.removeAttribute("aria-invalid");
      try {
        const d = await studio.api("/api/data/mask?" + q({ path, split: split.value, index: index.value, model: model.value, max_length: maxLen.value }));
        if (d.dropped) { out.replaceChildren(el("p", { class: "warn" }, `Training drops this record: ${d.dropped.reason} — ${d.dropped.detail}`), recordView(d.view)); return; }
        const toks = el("div", { id: "mask-tokens", "aria-label": "tokens: trained highlighted, context dimmed" },
          d.tokens.map(t => el("span", { class: t.trained ? "trained" : "context", text: t.text })));
        out.replaceChildren(
          el("p", { id: "mask-counts", "data-tokens": d.n_tokens, "data-trained": d.n_trained },
            el("strong", {}, fmt(d.n_tokens)), " tokens, ", el("strong", {}, fmt(d.n_trained)), ` trained (${fmt(100 * d.n_trained / Math.max(1, d.n_tokens), 3)}%), `,
            fmt(d.n_tokens - d.n_trained), " context", d.truncated ? el("span", { class: "warn" }, ` — truncated to ${d.max_length}`) : "",
            el("span", { class: "muted" }, ` · ${d.tokenizer}${d.max_length ? `, max_length ${d.max_length}` : ""} · record ${d.index} of ${d.records}`)),
          el("p", { class: "mask-legend muted", style: "font-size:13px" }, el("span", { class: "is-trained" }, "trained"), " tokens are learned; ", el("span", { class: "is-context" }, "dimmed"), " tokens are context only (label −100)."),
          toks);
      } catch (ex) {
        const target = { model, index, split, max_length: maxLen }[ex.field];
        if (target) target.setAttribute("aria-invalid", "true");
        err.textContent = ex.message; out.replaceChildren();
      } finally { go.disabled = false; }
    }

    const form = el("form", { class: "toolbar", onsubmit: show },
      el("label", { for: "mask-split" }, "Split", split),
      el("label", { for: "mask-index" }, "Record #", index),
      el("label", { for: "mask-model" }, "Model (alias, model or run folder)", model, models),
      el("label", { for: "mask-max-length" }, "max_length", maxLen), go);
    return el("section", { id: "mask", "aria-labelledby": "mask-h" },
      el("h2", { id: "mask-h", text: "Loss mask" }),
      el("p", { class: "muted", text: "What training sees of a kept record: the model's chat template, assistant tokens trained, the rest context." }),
      form, err, out);
  }

  // ---------------------------------------------------------------------------------------- one folder
  async function folderPage(main, path, chosen = {}) {
    const acc = await studio.api("/api/data/card?" + q({ path }));
    main.append(el("p", { class: "muted", style: "margin:0" }, el("a", { href: "#/data" }, "← all data folders"),
      acc.run ? [" · part of run ", el("a", { href: "#/run?" + q({ path: acc.run }) }, acc.run)] : ""),
      el("h1", {}, "Data: ", el("code", {}, acc.path || "."), " ", el("span", { class: "badge", text: acc.kind })),
      el("nav", { "aria-label": "Sections", class: "toolbar" }, [["accounting", "Accounting"], ["rejects", "Rejects"], ["clusters", "Clusters"], ["histograms", "Histograms"], ["mask", "Loss mask"]]
        .map(([id, t]) => el("a", { href: "#", onclick: ev => { ev.preventDefault(); const s = document.getElementById(id); if (s) { s.scrollIntoView(); s.querySelector("h2").focus(); } } }, t))),
      accountingSection(acc));
    const slots = { histograms: el("div"), rejects: rejectsSection(path, acc, chosen), clusters: el("div"), mask: el("div") };
    main.append(slots.histograms, slots.rejects, slots.clusters, slots.mask);
    for (const h of main.querySelectorAll("h2")) h.tabIndex = -1;
    const defaultModel = acc.run || "smollm2-135m-instruct";
    slots.mask.replaceWith(maskSection(path, acc, defaultModel));
    const [hist, cl] = await Promise.allSettled([histogramSection(path), clustersSection(path), slots.rejects.ready]);
    for (const [slot, r] of [[slots.histograms, hist], [slots.clusters, cl]]) {
      if (r.status === "fulfilled") slot.replaceWith(r.value);
      else { slot.append(el("p", { class: "error", role: "alert", text: r.reason.message })); }
    }
    for (const h of main.querySelectorAll("h2")) h.tabIndex = -1;
  }

  studio.route("data", async (main, params) => {
    style();
    const path = params.get("path");
    if (path === null) await listing(main);
    else await folderPage(main, path, { step: params.get("step"), reason: params.get("reason") });
  });
})();
