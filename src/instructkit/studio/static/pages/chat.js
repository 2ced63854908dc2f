// The chat page (#/chat?run=P&run=Q: one column per run, the same prompt sent to each at once, replies
// streamed from the run's engine) and the export page (#/export?path=P: a merged HF folder or a GGUF file,
// with the exporter's verification shown).
"use strict";
(() => {
  const { el } = studio;

  function addStyle() {
    if (document.getElementById("chat-page-style")) return;
    document.head.append(el("style", { id: "chat-page-style" }, `
      .chat-form { display:grid; gap:10px; grid-template-columns:repeat(auto-fit, minmax(220px, 1fr)); align-items:start; }
      .chat-form fieldset { border:1px solid var(--line); border-radius:8px; margin:0; padding:6px 10px; min-width:0; }
      .chat-form legend { font-size:13px; color:var(--muted); }
      .chat-form .check { flex-direction:row; gap:6px; align-items:center; color:var(--fg); font-size:14px; }
      .chat-form textarea { width:100%; min-height:3.2em; resize:vertical; }
      .chat-send { display:flex; flex-wrap:wrap; gap:8px; align-items:end; margin:10px 0 14px; }
      .chat-send label { flex:1 1 260px; }
      .chat-send textarea { width:100%; min-height:4.5em; resize:vertical; }
      .chat-columns { display:grid; gap:12px; grid-template-columns:repeat(auto-fit, minmax(300px, 1fr)); }
      .chat-column h2 { margin:0 0 6px; font-size:1rem; display:flex; justify-content:space-between; gap:8px; flex-wrap:wrap; }
      .turn { margin:6px 0; padding:6px 8px; border-radius:6px; white-space:pre-wrap; word-break:break-word; }
      .turn.user { background:#fff; border:1px solid var(--line); }
      .turn.assistant { background:#e9eefb; }
      .reply[data-state=streaming]::after { content:"▍"; color:var(--accent); }
      .reply[data-state=error] { background:#fbeaea; color:var(--bad); }
      .turn .who { display:block; font-size:12px; color:var(--muted); }
      .turn .meta { display:block; font-size:12px; color:var(--muted); margin-top:4px; }
      .export-form { display:grid; gap:10px; grid-template-columns:repeat(auto-fit, minmax(220px, 1fr)); align-items:end; max-width:900px; }
      #export-result[data-verified=true] .verdict { color:var(--good); font-weight:600; }
      #export-result[data-verified=false] .verdict { color:var(--bad); font-weight:600; }
    `));
  }

  // Server-sent events from a POST: onEvent(data) per event until the stream ends.
  function streamPost(path, json, onEvent, signal) {
    return studio.events(path, (type, data) => onEvent(data), signal, { method: "POST", json });
  }

  // An error next to the field it names (ids map API field -> input), else in `fallback`.
  function fieldError(err, ids, fallback) {
    for (const n of document.querySelectorAll(".field-error")) n.remove();
    const id = err.field && ids[err.field.split(".")[0]];
    const input = id && document.getElementById(id);
    const msg = el("p", { class: "field-error", role: "alert", text: err.message || String(err) });
    if (input) { input.setAttribute("aria-invalid", "true"); input.closest("label, fieldset").after(msg); }
    else fallback.append(msg);
  }

  // ------------------------------------------------------------------------------------------ chat
  studio.route("chat", async (main, params) => {
    addStyle();
    const data = await studio.api("/api/chat/models");
    const runs = data.runs.filter(r => r.chat);
    main.append(el("h1", { text: "Chat" }));
    if (!runs.length) {
      main.append(el("p", { class: "muted" }, "No finished run with a text-generating model under the runs folder yet. ",
        el("a", { href: "#/train" }, "Train one"), "."));
      return null;
    }
    const wanted = new Set(params.getAll("run").length ? params.getAll("run") : [runs[0].path]);
    const boxes = runs.map((r, i) => el("label", { class: "check", for: `chat-run-${i}` },
      el("input", { type: "checkbox", id: `chat-run-${i}`, name: "run", value: r.path, checked: wanted.has(r.path) }),
      r.path, el("span", { class: "muted", text: ` ${r.method || ""}` })));
    const system = el("textarea", { id: "chat-system", rows: 2, placeholder: "(none: the template's default)" });
    const maxTokens = el("input", { id: "chat-max-tokens", type: "number", min: 1, max: data.max_tokens, value: 128 });
    const temperature = el("input", { id: "chat-temperature", type: "number", min: 0, max: 2, step: 0.1, value: 0 });
    const message = el("textarea", { id: "chat-message", rows: 3, placeholder: "Ask something (Ctrl+Enter sends)" });
    const send = el("button", { type: "submit", id: "chat-send", text: "Send" });
    const reset = el("button", { type: "button", id: "chat-reset", class: "secondary", text: "New conversation" });
    const note = el("p", { class: "muted", id: "chat-note" });
    const columns = el("div", { class: "chat-columns", id: "chat-columns" });
    const ids = { max_tokens: "chat-max-tokens", temperature: "chat-temperature", messages: "chat-message" };
    const form = el("form", { id: "chat-form", "aria-label": "Chat" },
      el("div", { class: "chat-form" },
        el("fieldset", {}, el("legend", { text: `Runs (up to ${data.max_loaded} side by side)` }), boxes),
        el("label", { for: "chat-system" }, "System prompt (optional)", system),
        el("div", { class: "toolbar" },
          el("label", { for: "chat-max-tokens" }, "Max tokens", maxTokens),
          el("label", { for: "chat-temperature" }, "Temperature (0: greedy)", temperature))),
      el("div", { class: "chat-send" }, el("label", { for: "chat-message" }, "Message", message), send, reset));
    main.append(form, note, columns);

    const state = new Map();  // run path -> {history, column, log}
    let controllers = [];
    const selected = () => boxes.map(b => b.querySelector("input")).filter(b => b.checked).map(b => b.value);

    function column(path) {
      if (state.has(path)) return state.get(path);
      const log = el("div", { class: "turns", "aria-live": "polite" });
      const col = el("section", { class: "chat-column panel", "data-run": path, "aria-label": `Chat with ${path}` },
        el("h2", {}, el("span", {}, path), el("a", { href: "#/export?" + new URLSearchParams({ path }), text: "export…" })), log);
      const s = { history: [], column: col, log };
      state.set(path, s);
      return s;
    }
    function layout() {
      const chosen = selected();
      for (const b of boxes) { const input = b.querySelector("input"); input.disabled = !input.checked && chosen.length >= data.max_loaded; }
      note.textContent = chosen.length ? "" : "Pick a run to chat with.";
      columns.replaceChildren(...chosen.map(p => column(p).column));
      send.disabled = !chosen.length;
    }
    for (const b of boxes) b.querySelector("input").addEventListener("change", layout);
    layout();

    async function ask(path, text, sampling) {
      const s = column(path);
      const msgs = [];
      if (system.value.trim()) msgs.push({ role: "system", content: system.value });
      msgs.push(...s.history, { role: "user", content: text });
      const reply = el("span", { class: "text" });
      const meta = el("span", { class: "meta" });
      const turn = el("div", { class: "turn assistant reply", "data-state": "streaming" }, el("span", { class: "who", text: path }), reply, meta);
      s.log.append(el("div", { class: "turn user" }, el("span", { class: "who", text: "you" }), text), turn);
      const ctl = new AbortController(); controllers.push(ctl);
      let full = "";
      try {
        await streamPost("/api/chat", { path, messages: msgs, ...sampling }, ev => {
          if (ev.delta !== undefined) { full += ev.delta; reply.textContent = full.trimStart(); }
          else if (ev.done) {
            reply.textContent = ev.text.trim();  // as `instructkit chat` prints it; the history keeps it whole
            meta.textContent = `${ev.completion_tokens} tokens · ${ev.finish_reason} · ${studio.fmt(ev.seconds, 3)} s`;
            s.history.push({ role: "user", content: text }, { role: "assistant", content: ev.text });
            turn.dataset.state = "done";
          } else if (ev.error) { throw new Error(ev.error.message); }
        }, ctl.signal);
        if (turn.dataset.state !== "done") throw new Error("the reply stopped before it ended");
      } catch (err) {
        if (err.name === "AbortError") return;
        turn.dataset.state = "error";
        reply.textContent = err.message || String(err);
        if (err.field && ids[err.field.split(".")[0]]) fieldError(err, ids, note);
      }
    }

    form.addEventListener("submit", async e => {
      e.preventDefault();
      for (const n of main.querySelectorAll(".field-error")) n.remove();
      for (const n of main.querySelectorAll("[aria-invalid]")) n.removeAttribute("aria-invalid");
      const text = message.value;
      const chosen = selected();
      if (!text.trim() || !chosen.length) { message.focus(); return; }
      const sampling = { max_tokens: Number(maxTokens.value), temperature: Number(temperature.value) };
      send.disabled = true; form.dataset.state = "sending";
      message.value = "";
      await Promise.all(chosen.map(p => ask(p, text, sampling)));
      send.disabled = false; form.dataset.state = "idle";
      message.focus();
    });
    message.addEventListener("keydown", e => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
    reset.addEventListener("click", () => {
      for (const s of state.values()) { s.history = []; s.log.replaceChildren(); }
      message.focus();
    });
    return () => { for (const c of controllers) c.abort(); controllers = []; };
  });

  // ---------------------------------------------------------------------------------------- export
  const FORMAT_NAMES = { hf: "merged Hugging Face folder", gguf: "GGUF file (llama.cpp)" };

  studio.route("export", async (main, params) => {
    addStyle();
    const data = await studio.api("/api/export/options");
    main.append(el("h1", { text: "Export" }));
    if (!data.runs.length) {
      main.append(el("p", { class: "muted", text: "No trained run under the runs folder yet." }));
      return null;
    }
    const want = params.get("path") || data.runs[0].path;
    const path = el("select", { id: "export-path" }, data.runs.map(r =>
      el("option", { value: r.path, selected: r.path === want }, `${r.path} (${r.method || "?"}, ${r.task || "?"})`)));
    const format = el("select", { id: "export-format" }, data.formats.map(f => el("option", { value: f }, FORMAT_NAMES[f] || f)));
    const dtype = el("select", { id: "export-dtype" }, data.dtypes.map(d => el("option", { value: d }, d)));
    const merge = el("input", { id: "export-merge", type: "checkbox", checked: true });
    const out = el("input", { id: "export-out", type: "text", autocomplete: "off", spellcheck: "false" });
    const go = el("button", { type: "submit", id: "export-start", text: "Export and verify" });
    const status = el("p", { class: "muted", id: "export-status", role: "status" });
    const result = el("section", { id: "export-result", "aria-live": "polite" });
    let edited = false;
    const suggest = () => {
      if (edited) return;
      const name = path.value.split("/").pop() || "run";
      out.value = format.value === "gguf" ? `exports/${name}.gguf` : `exports/${name}-merged`;
    };
    suggest();
    out.addEventListener("input", () => { edited = true; });
    path.addEventListener("change", suggest);
    format.addEventListener("change", suggest);
    if (data.busy) status.textContent = "An export is running; another can start when it ends.";
    const ids = { path: "export-path", format: "export-format", dtype: "export-dtype", merge: "export-merge", out: "export-out" };
    const form = el("form", { id: "export-form", "aria-label": "Export" },
      el("div", { class: "export-form" },
        el("label", { for: "export-path" }, "Run", path),
        el("label", { for: "export-format" }, "Format", format),
        el("label", { for: "export-dtype" }, "Weights", dtype),
        el("label", { for: "export-out" }, "Output (under the runs folder)", out),
        el("label", { class: "check", for: "export-merge", style: "flex-direction:row;gap:6px;align-items:center" }, merge,
          "Merge the trained update into the base weights"),
        el("div", {}, go)),
      el("p", { class: "muted", text: "The export is reloaded with plain transformers and its logits compared with the trained model's on fixed prompts before it is written; a mismatch writes nothing." }));
    main.append(form, status, result);

    form.addEventListener("submit", async e => {
      e.preventDefault();
      for (const n of main.querySelectorAll("[aria-invalid]")) n.removeAttribute("aria-invalid");
      go.disabled = true; result.replaceChildren(); delete result.dataset.verified;
      status.textContent = "Exporting and verifying…";
      const started = performance.now();
      try {
        const r = await studio.api("/api/export", { method: "POST", json: {
          path: path.value, format: format.value, dtype: dtype.value, merge: merge.checked, out: out.value } });
        status.textContent = `Done in ${studio.duration((performance.now() - started) / 1000)}.`;
        result.dataset.verified = String(r.verified);
        result.append(
          el("h2", {}, el("span", { class: "verdict", text: r.verified ? "verified" : "not verified" }), " — ", r.path),
          studio.table(["check", "result"], [
            ["max |logit diff| vs the trained model", `${studio.fmt(r.max_abs_diff, 3)} ≤ ${r.tolerance_rule}`],
            ["fixed prompts", r.prompts],
            ["rendering and tokens", `${r.template}: identical after the reload`],
            ["the run's weights before loading", r.source_verified ? "matched its checksum manifest" : "no checksum manifest (not checked)"],
            ["format", `${FORMAT_NAMES[r.format] || r.format}, ${r.dtype}${r.merged ? ", merged" : ""} (${r.method} run)`],
            ["checksums of the export", r.manifest ? el("code", { text: r.manifest }) : "—"],
          ]),
          el("pre", { class: "summary", text: [r.summary, ...r.log.map(l => "· " + l)].join("\n") }));
      } catch (err) {
        status.textContent = "";
        result.dataset.verified = "false";
        result.append(el("p", { class: "verdict", text: "not exported" }));
        fieldError(err, ids, result);
      } finally { go.disabled = false; }
    });
    return null;
  });
})();
