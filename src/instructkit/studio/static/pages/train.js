// The train pages: #/train?kind=K&from=PATH (a form built from the config schema of instructkit run, train,
// continual or generate NAME; it starts a job) and #/train?job=ID (the job's live progress over server-sent
// events: stage, step/total, loss curve, tokens/s, ETA; cancel). Everything comes from /api/forms and
// /api/jobs; a config error comes back as the CLI loader's message naming the dotted key, shown by that field.
"use strict";
(() => {
  const { el, fmt, when, duration, badge } = studio;
  const KINDS = ["run", "train", "continual", "generate"];
  const STYLE = `
    #job-form details { border:1px solid var(--line); border-radius:8px; padding:4px 12px 8px; margin:10px 0; background:#fff; }
    #job-form details details { background:var(--panel); }
    #job-form summary { cursor:pointer; font-weight:600; padding:4px 0; }
    #job-form summary small { font-weight:400; }
    .field { margin:10px 0; max-width:760px; }
    .field label { color:var(--fg); }
    .field label code { font-size:14px; }
    .field input[type=text], .field textarea, .field select { width:100%; max-width:640px; }
    .field textarea { font-family:ui-monospace, monospace; font-size:13px; }
    .field input[type=checkbox] { width:1.2em; height:1.2em; align-self:flex-start; }
    .field small { display:block; color:var(--muted); font-size:13px; }
    .field small .meta { font-family:ui-monospace, monospace; font-size:12px; }
    .field [aria-invalid=true] { border-color:var(--bad); }
    .job-actions { display:flex; flex-wrap:wrap; gap:8px; align-items:center; margin:12px 0; }
    #job-progress { width:100%; height:18px; }
    #job-end table { margin-top:4px; }
    .panel h2 { margin-top:0; }
    .job-numbers { display:flex; flex-wrap:wrap; gap:4px 20px; font-variant-numeric:tabular-nums; margin:6px 0; }
    ol#job-stages { list-style:none; padding:0; margin:0 0 12px; display:flex; flex-wrap:wrap; gap:6px; }
    ol#job-stages li { border:1px solid var(--line); border-radius:6px; padding:3px 10px; background:#fff; font-size:14px; }
    ol#job-stages li[data-state=running] { border-color:var(--accent); color:var(--accent); font-weight:600; }
    ol#job-stages li[data-state=done] { border-color:var(--good); }
    ol#job-stages li[data-state=skipped], ol#job-stages li[data-state=pending] { color:var(--muted); border-style:dashed; }
    ol#job-stages li[data-state=failed], ol#job-stages li[data-state=cancelled] { border-color:var(--bad); color:var(--bad); }
    .job-cmd { overflow-wrap:anywhere; }
    .train-sr { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }`;

  function addStyle() {
    if (document.getElementById("train-page-style")) return;
    document.head.append(el("style", { id: "train-page-style" }, STYLE));
  }

  const fieldId = name => "f-" + name.replace(/[^A-Za-z0-9_-]/g, "-");
  const hash = (name, pairs) => { const q = new URLSearchParams(pairs).toString(); return "#/" + name + (q ? "?" + q : ""); };

  function lookup(values, name) {
    let node = values;
    for (const part of name.split(".")) {
      if (node === null || typeof node !== "object" || Array.isArray(node) || !(part in node)) return { found: false };
      node = node[part];
    }
    return { found: true, value: node };
  }
  function setNested(out, name, value) {
    const parts = name.split(".");
    let node = out;
    for (const p of parts.slice(0, -1)) node = (node[p] = node[p] && typeof node[p] === "object" ? node[p] : {});
    node[parts[parts.length - 1]] = value;
  }
  // A docstring with ``literal`` spans as <code>.
  const docNodes = text => String(text || "").split("``").map((part, i) => (i % 2 ? el("code", {}, part) : part));
  function asText(v, input) {
    if (v === null || v === undefined) return "";
    if (input === "yaml") return typeof v === "string" ? v : JSON.stringify(v, null, Array.isArray(v) || Object.keys(v).length < 4 ? 0 : 2);
    return String(v);
  }

  // ------------------------------------------------------------------------------ the fields of a form
  function inputFor(node, id, value) {
    if (node.input === "checkbox") { const box = el("input", { type: "checkbox", id }); box.checked = !!value; return box; }
    if (node.input === "select") {
      const options = (node.nullable ? [null] : []).concat(node.choices);
      const sel = el("select", { id }, options.map(c => el("option", { value: c === null ? "" : String(c) }, c === null ? "(null)" : String(c))));
      sel.value = value === null || value === undefined ? "" : String(value);
      return sel;
    }
    if (node.input === "yaml") {
      const text = asText(value, "yaml");
      return el("textarea", { id, rows: Math.min(8, Math.max(1, text.split("\n").length)), spellcheck: "false" }, text);
    }
    const attrs = { id, type: "text", value: asText(value, node.input), autocomplete: "off", spellcheck: "false" };
    if (node.input === "number") attrs.inputmode = "decimal";
    return el("input", attrs);
  }

  function field(node, values) {
    if (node.section) {
      return el("details", { open: true, "data-section": node.name },
        el("summary", {}, el("code", {}, node.name), node.doc ? el("small", { class: "muted" }, " — ", docNodes(node.doc)) : null),
        node.fields.map(n => field(n, values)));
    }
    const id = fieldId(node.name);
    const given = lookup(values, node.name);
    const input = inputFor(node, id, given.found ? given.value : node.default);
    input.dataset.name = node.name;
    input.dataset.input = node.input;
    input._node = node;
    input._given = given.found;
    input._initial = node.input === "checkbox" ? input.checked : input.value;
    const meta = [node.type, node.required ? "required" : "default " + (node.default === null ? "null" : asText(node.default, "yaml") || '""'), node.rules]
      .filter(Boolean).join(" · ");
    const doc = el("small", { id: id + "-doc" }, docNodes(node.doc), node.doc ? " " : "", el("span", { class: "meta" }, "(" + meta + ")"));
    input.setAttribute("aria-describedby", id + "-doc " + id + "-err");
    const label = node.input === "checkbox"
      ? el("label", { for: id, style: "flex-direction:row;align-items:center;gap:8px" }, input, el("code", {}, node.name))
      : el("label", { for: id }, el("code", {}, node.name));
    return el("div", { class: "field", "data-field": node.name }, label, node.input === "checkbox" ? null : input, doc,
      el("div", { class: "field-error", id: id + "-err", role: "alert", hidden: true }));
  }

  // The config from the form: a field is sent when the start-from file gave it or it differs from the default
  // (so the YAML written holds what the user chose, as a hand-written one would).
  function collect(form) {
    const config = {}, yaml = [];
    for (const input of form.querySelectorAll("[data-name]")) {
      const node = input._node;
      let value;
      if (node.input === "checkbox") {
        value = input.checked;
        if (!input._given && value === input._initial) continue;
      } else {
        const text = input.value;
        if (!input._given && text === input._initial) continue;
        const blank = text.trim() === "";
        if (node.input === "yaml") { value = text; yaml.push(node.name); }
        else if (blank && (node.nullable || node.input !== "text")) value = null;
        else if (node.input === "number" && Number.isFinite(Number(text.trim()))) value = Number(text.trim());
        else if (node.input === "select" && node.choices) value = node.choices.find(c => String(c) === text) ?? text;
        else value = text;
      }
      setNested(config, node.name, value);
    }
    return { config, yaml };
  }

  function clearErrors(form) {
    for (const e of form.querySelectorAll(".field-error")) { e.hidden = true; e.textContent = ""; }
    for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
    const top = document.getElementById("form-error"); top.hidden = true; top.textContent = "";
  }

  // The field a dotted key names (train.method.r -> train.method; inputs[2] -> inputs), or null.
  function fieldFor(form, key) {
    let name = (key || "").replace(/\[\d+\]/g, "");
    while (name) {
      const box = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
      if (box) return box;
      name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "";
    }
    return null;
  }

  function showError(form, err) {
    const box = err.field ? fieldFor(form, err.field) : null;
    if (!box) {
      const top = document.getElementById("form-error");
      top.textContent = err.message; top.hidden = false; top.focus();
      return;
    }
    for (let d = box.parentElement; d; d = d.parentElement) if (d.tagName === "DETAILS") d.open = true;
    const msg = box.querySelector(".field-error");
    msg.textContent = err.message; msg.hidden = false;
    const input = box.querySelector("input, select, textarea");
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  }

  function jobsTable(jobs) {
    if (!jobs.length) return el("p", { class: "muted", id: "jobs-none" }, "No jobs yet.");
    const t = studio.table(["job", "kind", "run", "status", "started", "took"],
      jobs.map(j => [el("a", { href: hash("train", [["job", j.id]]) }, j.id), j.kind + (j.generator ? " " + j.generator : ""),
        el("code", {}, j.run), badge(j.status), when(j.started), duration(j.elapsed)]));
    t.querySelector("table").id = "jobs";
    return t;
  }

  // ------------------------------------------------------------------------------- #/train: the form
  async function formPage(main, params) {
    const kind = KINDS.includes(params.get("kind")) ? params.get("kind") : "run";
    const from = params.get("from") || "", generator = params.get("generator") || "";
    const q = new URLSearchParams();
    if (from) q.set("from", from);
    if (generator) q.set("generator", generator);
    const [form, jobs] = await Promise.all([studio.api(`/api/forms/${kind}?${q}`), studio.api("/api/jobs")]);
    const go = changed => {
      const p = Object.assign({ kind, from, generator: form.generator || "" }, changed);
      studio.go("train", Object.entries(p).filter(([, v]) => v));
    };
    const kindSel = el("select", { id: "form-kind", onchange: e => go({ kind: e.target.value, generator: "" }) },
      KINDS.map(k => el("option", { value: k }, k)));
    kindSel.value = kind;
    const fromSel = el("select", { id: "form-from", onchange: e => go({ from: e.target.value }) },
      el("option", { value: "" }, "(the defaults)"), form.sources.map(s => el("option", { value: s }, s)));
    fromSel.value = from;
    const tools = [el("label", { for: "form-kind" }, "What to start", kindSel)];
    if (kind === "generate") {
      const genSel = el("select", { id: "form-generator", onchange: e => go({ generator: e.target.value }) },
        form.generators.map(g => el("option", { value: g }, g)));
      genSel.value = form.generator;
      tools.push(el("label", { for: "form-generator" }, "Generator", genSel));
    }
    tools.push(el("label", { for: "form-from" }, "Start from", fromSel));

    const formEl = el("form", { id: "job-form", novalidate: true });
    if (kind === "generate") {
      formEl.append(el("div", { class: "field", "data-field": "output" },
        el("label", { for: "f-output" }, el("code", {}, "output")),
        el("input", { id: "f-output", type: "text", autocomplete: "off", "aria-describedby": "f-output-doc f-output-err" }),
        el("small", { id: "f-output-doc" }, "The output folder, under the runs folder: records.jsonl, rejects.jsonl, the card, cache.sqlite (-o)."),
        el("div", { class: "field-error", id: "f-output-err", role: "alert", hidden: true })));
    }
    formEl.append(...form.fields.map(n => field(n, form.values || {})));
    const resume = kind === "train" ? el("input", { type: "checkbox", id: "job-resume" }) : null;
    const start = el("button", { type: "submit", id: "job-start" }, "Start " + kind);
    const busy = el("span", { class: "muted", id: "job-checking", role: "status" });
    formEl.append(
      el("p", { class: "error", id: "form-error", role: "alert", tabindex: "-1", hidden: true }),
      el("div", { class: "job-actions" }, start,
        resume ? el("label", { for: "job-resume", style: "flex-direction:row;gap:6px;align-items:center" }, resume,
          "resume from the run's newest checkpoint (--resume)") : null, busy));
    formEl.addEventListener("submit", async e => {
      e.preventDefault();
      clearErrors(formEl);
      const { config, yaml } = collect(formEl);
      const body = { kind, config, yaml };
      if (kind === "generate") { body.generator = form.generator; body.output = formEl.querySelector("#f-output").value; }
      if (resume) body.resume = resume.checked;
      start.disabled = true; busy.textContent = "checking the config…";
      try {
        const job = await studio.api("/api/jobs", { method: "POST", json: body });
        studio.go("train", [["job", job.id]]);
      } catch (err) {
        busy.textContent = "";
        showError(formEl, err);
      } finally { start.disabled = false; }
    });

    main.append(el("h1", { text: "Train" }),
      el("p", { class: "muted" }, "Start ", el("code", {}, "instructkit " + form.command), " on the runs folder. Every field is the config's own, with its documentation; the config is checked by the same loader as the command line before anything starts."),
      el("div", { class: "toolbar" }, tools), formEl,
      el("h2", { text: "Jobs" }), jobsTable(jobs.jobs));
  }

  // --------------------------------------------------------------------- #/train?job=ID: live progress
  async function jobPage(main, id) {
    const first = await studio.api("/api/jobs/" + encodeURIComponent(id));
    const status = el("span", { id: "job-status", role: "status" });
    const stages = el("ol", { id: "job-stages", "aria-label": "Stages" });
    const progress = el("progress", { id: "job-progress", max: 1, value: 0 });
    const step = el("span", { id: "job-step" }), tps = el("span", { id: "job-tps" }), eta = el("span", { id: "job-eta" });
    const chart = el("div", { id: "job-loss" });
    const cancel = el("button", { type: "button", id: "job-cancel", class: "secondary" }, "Cancel");
    const end = el("div", { id: "job-end" }), after = el("div", { id: "job-after" });
    const elapsed = el("span", { id: "job-elapsed" });
    cancel.addEventListener("click", async () => {
      cancel.disabled = true; cancel.textContent = "Cancelling…";
      try { update(await studio.api(`/api/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" })); }
      catch (err) { studio.showError(err, end); cancel.disabled = false; cancel.textContent = "Cancel"; }
    });

    let shownPoints = -1;
    function update(p) {
      status.dataset.status = p.status;
      status.replaceChildren(badge(p.status), p.cancel_requested && p.status === "running" ? " cancelling…" : "");
      elapsed.textContent = duration(p.elapsed);
      stages.replaceChildren(...p.stages.map(s => el("li", { "data-stage": s.name, "data-state": s.state, "aria-current": s.name === p.stage && p.status === "running" ? "step" : null },
        s.name, el("span", { class: "train-sr" }, " (" + s.state + ")"))));
      const total = p.total || 0, at = p.step || 0;
      if (total) { progress.max = total; progress.value = Math.min(at, total); } else { progress.removeAttribute("value"); }
      if (p.status !== "running" && total) progress.value = Math.min(at, total);
      step.textContent = total ? `step ${fmt(at)} / ${fmt(total)}` : (at ? `step ${fmt(at)}` : "waiting for the first training step");
      tps.textContent = p.tokens_per_second ? `${fmt(Math.round(p.tokens_per_second))} tokens/s` : "";
      eta.textContent = p.status === "running" && p.eta_seconds !== null && p.eta_seconds !== undefined && at < total ? `ETA ${duration(p.eta_seconds)}` : "";
      const n = p.loss.length + p.eval_loss.length;
      if (n !== shownPoints) {
        shownPoints = n;
        const series = [{ name: "train loss", points: p.loss }];
        if (p.eval_loss.length) series.push({ name: "val loss", points: p.eval_loss });
        chart.replaceChildren(studio.lineChart(series, { ylabel: "loss" }));
      }
      cancel.hidden = p.status !== "running";
      if (p.status !== "running") ended(p);
    }

    function ended(p) {
      const word = p.status === "done" ? "Finished" : p.status === "cancelled" ? "Cancelled" : "Failed";
      const parts = [el("p", {}, el("strong", {}, word), p.returncode !== null && p.returncode !== undefined ? el("span", { class: "muted" }, ` (exit code ${p.returncode})`) : "",
        " · ", el("a", { id: "job-run-link", href: hash("run", [["path", p.run]]) }, "open the run page of " + p.run))];
      const names = Object.keys(p.metrics || {});
      if (names.length) {
        const t = studio.table(["metric", "before", "after"], names.map(k => [k, fmt(p.metrics[k].before), fmt(p.metrics[k].after)]), [1, 2]);
        const table = t.querySelector("table");
        table.id = "job-metrics";
        table.querySelectorAll("tbody tr").forEach((tr, i) => {
          tr.dataset.metric = names[i]; tr.children[1].classList.add("before"); tr.children[2].classList.add("after");
        });
        parts.push(t);
      }
      end.replaceChildren(...parts);
      if (p.status !== "done") {
        after.replaceChildren(el("h2", { text: "Going on" }),
          el("p", {}, "To go on from where it stopped, run this in the runs folder (finished stages are skipped, training resumes from its newest checkpoint):"),
          el("pre", { id: "job-resume-cmd" }, p.resume),
          p.log_tail ? el("h2", { text: "The log's last lines" }) : "", p.log_tail ? el("pre", { id: "job-log" }, p.log_tail) : "");
      }
    }

    main.append(
      el("p", {}, el("a", { href: "#/train" }, "← Train")),
      el("h1", {}, "Job ", el("code", {}, first.id), " ", status),
      el("p", { class: "muted" }, `${first.kind}${first.generator ? " " + first.generator : ""} · run `, el("code", {}, first.run),
        ` · started ${when(first.started)} · `, elapsed),
      el("p", { class: "job-cmd" }, el("code", {}, first.command)),
      el("div", { class: "grid" },
        el("section", { class: "panel", "aria-labelledby": "job-progress-h" }, el("h2", { id: "job-progress-h" }, "Progress"),
          stages, el("label", { for: "job-progress" }, "Training steps"), progress,
          el("div", { class: "job-numbers" }, step, tps, eta), el("div", { class: "job-actions" }, cancel), end),
        el("section", { class: "panel", "aria-labelledby": "job-loss-h" }, el("h2", { id: "job-loss-h" }, "Loss"), chart)),
      after);
    update(first);
    if (first.status !== "running") return null;
    const ctrl = new AbortController();
    studio.events(`/api/jobs/${encodeURIComponent(id)}/events`, (type, data) => update(data), ctrl.signal)
      .catch(err => { if (err.name !== "AbortError") studio.showError(err, end); });
    return () => ctrl.abort();
  }

  studio.route("train", async (main, params) => {
    addStyle();
    if (params.get("job")) return jobPage(main, params.get("job"));
    return formPage(main, params);
  });
})();
