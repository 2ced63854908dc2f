// The runs pages (not built yet).
"use strict";
studio.route("runs", async (main) => {
  const { el } = studio;
  main.append(el("h1", { text: "Runs" }));
  const data = await studio.api("/api/runs");
  main.append(el("p", { class: "muted", text: `${data.runs.length} run folders under ${data.root}` }));
  main.append(studio.table(["run", "kind", "status", "stage"],
    data.runs.map(r => [r.path, r.kind, studio.badge(r.status), r.stage || "—"])));
});
