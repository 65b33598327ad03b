// realload's node-heat page: draws /debug/nodes and ranks nodes for a pasted Pod manifest
// (POST /debug/explain). Every value from the cluster goes in as text, never as markup.
"use strict";

const QUALITY_LABEL = {
  "suspect-zero": "suspect zero",
  stale: "stale",
  missing: "missing",
  invalid: "invalid",
};
let selectedMetric = null;
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function pct(v) {
  return v === null || v === undefined ? "–" : `${Math.round(v * 100)}%`;
}

// Green when cool, through amber, to red at and past 90%.
function heatColour(v) {
  const t = Math.min(1, Math.max(0, (v - 0.2) / 0.7));
  return `hsl(${Math.round(130 * (1 - t))}, 65%, ${Math.round(58 - 8 * t)}%)`;
}

function worstQuality(node) {
  const order = ["valid", "stale", "missing", "invalid", "suspect-zero"];
  let worst = "valid";
  for (const r of node.readings) {
    if (order.indexOf(r.quality) > order.indexOf(worst)) worst = r.quality;
  }
  return worst;
}

function renderSummary(d) {
  const s = document.getElementById("summary");
  s.replaceChildren(
    el("span", {}, `now ${d.now}`),
    el("span", {}, `${d.nodes.length} nodes`),
    el("span", {}, `generation ${d.generation}${d.synced ? "" : " (not synced)"}`),
    el(
      "span",
      { class: d.breakerOverAllNodes ? "tripped" : "", id: "breaker" },
      d.breakerOverAllNodes
        ? "breaker: would trip (too many unknown nodes)"
        : "breaker: closed",
    ),
    el("span", {}, `breaker trips in recent decisions: ${d.recentBreakerTrips}`),
    el("span", {}, `unknown nodes ${d.unknownNodes} (at most ${d.unknownPodCap} new pods each)`),
    el("span", {}, `pods in the hot-spot ledger ${d.ledgerPods}, reserved ${d.reservedPods}`),
  );
}

function renderMetrics(d) {
  const names = d.nodes.length ? d.nodes[0].readings.map((r) => r.metric) : [];
  if (!names.includes(selectedMetric)) selectedMetric = names[0] || null;
  const group = document.getElementById("metrics");
  group.replaceChildren(
    ...names.map((m) => {
      const input = el("input", { type: "radio", name: "metric", value: m, checked: m === selectedMetric });
      input.addEventListener("change", () => {
        selectedMetric = m;
        refresh();
      });
      return el("label", {}, input, ` ${m}`);
    }),
  );
}

function tile(node, unknownPodCap) {
  const reading = node.readings.find((r) => r.metric === selectedMetric);
  const value = reading ? (reading.estimated ?? null) : null;
  const usable = node.known && reading && reading.quality === "valid" && value !== null;
  const rejected = node.filter && node.filter.verdict === "reject";
  const t = el("article", {
    class: `tile${usable ? "" : " unknown"}${rejected ? " rejected" : ""}`,
    "data-node": node.name,
    "data-quality": worstQuality(node),
    "data-known": String(node.known),
    "data-verdict": rejected ? "reject" : "pass",
  });
  if (usable) t.style.background = heatColour(value);
  const badges = el("div", { class: "badges" });
  const seen = new Set();
  for (const r of node.readings) {
    if (r.quality !== "valid" && !seen.has(r.quality)) {
      seen.add(r.quality);
      badges.append(el("span", { class: `badge q-${r.quality}`, title: r.reason || "" }, QUALITY_LABEL[r.quality] || r.quality));
    }
  }
  if (!node.known) {
    badges.append(el("span", { class: "badge", title: "an unknown node takes at most this many new pods until its readings are valid again" }, `unknown: ${node.unknownPods ?? 0} of ${unknownPodCap} new pods`));
  }
  if (rejected) badges.append(el("span", { class: "badge rejected" }, "filtered out"));
  if (node.unschedulable) badges.append(el("span", { class: "badge cordoned" }, "cordoned"));
  if (!node.ready) badges.append(el("span", { class: "badge cordoned" }, "not ready"));
  const rows = node.readings.map((r) =>
    el(
      "tr",
      { "data-metric": r.metric },
      el("td", {}, r.metric),
      el("td", { class: "num", title: r.reason || `${r.ageSeconds}s old` }, r.quality === "valid" ? pct(r.ratio) : QUALITY_LABEL[r.quality] || r.quality),
      el("td", { class: "num", title: "hot-spot addition: recently placed pods not yet in the reading" }, r.hotspot > 0 ? `+${pct(r.hotspot)}` : ""),
      el("td", { class: "num", title: "the estimate the filter and score use" }, r.estimated === null ? "" : `= ${pct(r.estimated)}`),
    ),
  );
  const verdict = rejected ? `filtered out: ${node.filterMessage || node.filter.metric}` : "passes the filter";
  t.append(
    el("div", { class: "name" }, node.name),
    badges,
    el("table", {}, el("tbody", {}, ...rows)),
    el("div", { class: "verdict" }, `${verdict} · score ${node.score}`),
    el(
      "div",
      { class: "ledger" },
      `hot-spot +${pct(node.hotspotCpu)} CPU, +${pct(node.hotspotMemory)} memory · ${node.ledgerPods} recent pods (${node.ledgerPodsPartlyShown} partly in the reading), ${node.inFlight} in flight, ${node.reserved} reserved`,
    ),
  );
  return t;
}

function renderNodes(d) {
  document.getElementById("nodes").replaceChildren(...d.nodes.map((n) => tile(n, d.unknownPodCap)));
}

function renderDecisions(d) {
  const body = document.querySelector("#decisions tbody");
  const rows = [...d.recentDecisions].reverse().map((r) =>
    el(
      "tr",
      {},
      el("td", {}, r.at),
      el("td", {}, r.verb),
      el("td", {}, r.pod),
      el("td", {}, `${r.candidates} (${r.unknown} unknown)`),
      el("td", {}, r.passed),
      el("td", {}, r.breakerTripped ? "tripped" : ""),
      el("td", {}, (r.best || []).join(", ") + (r.reservedOn ? ` (reserved on ${r.reservedOn})` : "")),
    ),
  );
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 7 }, "no request answered yet")));
  body.replaceChildren(...rows);
}

function showError(message) {
  const e = document.getElementById("error");
  e.hidden = !message;
  e.textContent = message || "";
}

async function refresh() {
  try {
    const response = await fetch("debug/nodes", { cache: "no-store" });
    if (!response.ok) throw new Error(`/debug/nodes answered ${response.status}`);
    const d = await response.json();
    renderSummary(d);
    renderMetrics(d);
    renderNodes(d);
    renderDecisions(d);
    document.body.dataset.loaded = "true";
    showError(null);
  } catch (e) {
    showError(`cannot read the extender's state: ${e.message}`);
  }
}

async function rank() {
  const status = document.getElementById("whatif-status");
  const out = document.getElementById("whatif");
  status.textContent = "ranking…";
  try {
    const response = await fetch("debug/explain", {
      method: "POST",
      headers: { "Content-Type": "application/yaml" },
      body: document.getElementById("pod").value,
    });
    const body = await response.json();
    if (!response.ok) {
      status.textContent = "";
      out.replaceChildren(el("div", { class: "error", id: "whatif-error" }, body.error || `answered ${response.status}`));
      return;
    }
    status.textContent = `${body.pod} at ${body.now}`;
    const head = el(
      "tr",
      {},
      ...["rank", "node", "score", "filter", "hot-spot CPU", "this pod's CPU", "notes"].map((h) => el("th", {}, h)),
    );
    const rows = body.nodes.map((n) =>
      el(
        "tr",
        { "data-node": n.node },
        el("td", {}, `${n.rank}${n.tied ? " (tied)" : ""}`),
        el("td", {}, n.node),
        el("td", {}, n.score),
        el("td", {}, n.passes ? "passes" : n.filterMessage || "filtered out"),
        el("td", {}, pct(n.hotspotCpu)),
        el("td", {}, pct(n.podCpu)),
        el("td", {}, (n.notes || []).join("; ")),
      ),
    );
    const extra = [];
    const u = body.expectedUsage;
    if (u) {
      const source = (learned, factor) => (learned ? "learned" : `hotspot.${factor}`);
      const from = body.learnedFrom
        ? `; workload ${body.workload} measured on ${body.learnedFrom.pods} pod(s) at ${body.learnedFrom.updated}`
        : body.workload
          ? `; nothing learned for workload ${body.workload}`
          : "; no controller, so no workload to learn from";
      extra.push(
        el(
          "p",
          { id: "whatif-usage" },
          `counted at ${u.cpuShare.toFixed(2)} of its CPU request (${source(u.cpuLearned, "cpuFactor")}) and ` +
            `${u.memoryShare.toFixed(2)} of its memory request (${source(u.memoryLearned, "memoryFactor")})${from}`,
        ),
      );
    }
    if (body.neutralReason) extra.push(el("p", { class: "warning" }, `load-awareness off: ${body.neutralReason}`));
    if (body.warning) extra.push(el("p", { class: "warning" }, body.warning));
    out.replaceChildren(...extra, el("table", { class: "rank", id: "whatif-table" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  } catch (e) {
    status.textContent = "";
    out.replaceChildren(el("div", { class: "error", id: "whatif-error" }, `cannot rank: ${e.message}`));
  }
}

function schedule() {
  clearInterval(timer);
  if (document.getElementById("auto").checked) timer = setInterval(refresh, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("rank").addEventListener("click", rank);
  document.getElementById("auto").addEventListener("change", schedule);
  document.getElementById("pod").value = [
    "apiVersion: v1",
    "kind: Pod",
    "metadata:",
    "  name: what-if",
    "  namespace: default",
    "spec:",
    "  containers:",
    "  - name: app",
    "    image: app",
    "    resources:",
    "      requests: {cpu: 500m, memory: 512Mi}",
  ].join("\n");
  refresh();
  schedule();
});
