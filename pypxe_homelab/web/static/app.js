// pypxe-homelab status page: the nodes table and a per-node timeline (#/node/<id>).
// Updates itself from /api/stream (server-sent events); falls back to polling every 5 s.
"use strict";

const POLL_MS = 5000;
let pollTimer = null;
let refreshTimer = null;
let streamOpen = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function ago(epoch) {
  if (!epoch) return "never";
  const s = Math.max(0, Date.now() / 1000 - epoch);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(epoch * 1000).toLocaleDateString();
}

function clock(epoch) {
  const d = new Date(epoch * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function badge(state) {
  const label = state === "unregistered" ? "not registered" : state;
  return el("span", { class: `badge state-${state}` }, label);
}

function progressBar(node) {
  if (node.state !== "installing" || node.progress === null || node.progress === undefined) return "";
  const pct = Math.max(0, Math.min(100, node.progress));
  const bar = el("div", { class: "bar", role: "progressbar", "aria-valuenow": pct.toFixed(0),
                          "aria-valuemin": "0", "aria-valuemax": "100" }, el("span"));
  bar.firstChild.style.width = `${pct}%`;
  return el("div", {}, bar, el("span", { class: "bar-label" }, `${pct.toFixed(0)}%`));
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function showError(message) {
  const p = document.getElementById("error");
  p.hidden = !message;
  p.textContent = message || "";
}

async function renderList() {
  const data = await getJSON("/api/nodes");
  const body = document.querySelector("#nodes tbody");
  const rows = data.nodes.map((n) => {
    const name = n.registered ? (n.hostname || n.device_id) : n.device_id;
    const row = el("tr", { class: n.registered ? "registered" : "unregistered", "data-id": n.device_id },
      el("td", {}, el("a", { href: `#/node/${n.device_id}` }, name),
         n.registered && n.hostname !== n.device_id ? el("span", { class: "sub" }, n.device_id) : null,
         n.pi ? el("span", { class: "sub" }, "Raspberry Pi") : null),
      el("td", {}, badge(n.state)),
      el("td", { class: "wide" }, progressBar(n)),
      el("td", {}, ago(n.last_seen)),
      el("td", { class: "opt" }, n.stage || "",
         n.diagnosis ? el("span", { class: "sub fail", title: n.diagnosis.fix }, n.diagnosis.reason) : null),
      el("td", { class: "opt" }, n.address || n.ip || ""),
      el("td", { class: "opt" }, n.os || ""));
    row.addEventListener("click", (ev) => {
      if (ev.target.tagName !== "A") location.hash = `#/node/${n.device_id}`;
    });
    return row;
  });
  body.replaceChildren(...rows);
  document.getElementById("list-empty").hidden = rows.length > 0;
}

function fact(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", {}, label), el("dd", {}, String(value)));
}

async function renderNode(id) {
  const [node, timeline] = await Promise.all([
    getJSON(`/api/nodes/${encodeURIComponent(id)}`),
    getJSON(`/api/nodes/${encodeURIComponent(id)}/events?limit=300`),
  ]);
  document.getElementById("node-title").replaceChildren(
    node.registered ? (node.hostname || node.device_id) : node.device_id, " ", badge(node.state));
  const facts = document.getElementById("node-facts");
  facts.replaceChildren();
  const dev = node.device || {};
  fact(facts, "Device id", node.device_id);
  fact(facts, "Install", node.registered ? `${node.install}, generation ${node.generation}` : null);
  if (node.state === "installing" && node.progress !== null) fact(facts, "Progress", `${node.progress.toFixed(0)}%`);
  if (node.diagnosis) {
    fact(facts, "Why it stopped", node.diagnosis.reason);
    fact(facts, "Fix", node.diagnosis.fix);
  }
  fact(facts, "Last event", node.last_event);
  fact(facts, "Last seen", node.last_seen ? `${ago(node.last_seen)} (${clock(node.last_seen)})` : "never");
  fact(facts, "Boot stage", dev.stage ? `${dev.stage} (boot ${dev.boots})` : null);
  fact(facts, "Address", node.address);
  fact(facts, "Seen at", dev.ip);
  fact(facts, "OS", node.os);
  fact(facts, "MAC", dev.mac || node.mac);
  fact(facts, "Firmware", dev.firmware ? `${dev.firmware} (arch ${dev.arch})` : null);
  fact(facts, "Raspberry Pi", dev.pi ? (dev.pi_model || "yes") + (dev.serial ? `, serial ${dev.serial}` : "") : null);
  fact(facts, "UUID", dev.uuid);
  fact(facts, "NIC", dev.nic);
  fact(facts, "Vendor class", dev.vendor_class);
  fact(facts, "iPXE", dev.ipxe ? "yes" : null);
  fact(facts, "Config names", (dev.config_names || []).join(", "));
  const suggest = document.getElementById("node-suggest");
  suggest.hidden = !node.suggested;
  suggest.querySelector("code").textContent = node.suggested || "";
  const items = timeline.events.slice().reverse().map((e) => {
    const failed = (e.detail && e.detail.result === "FAIL") || e.kind.endsWith(".error");
    return el("li", { "data-kind": e.kind },
      el("time", { datetime: new Date(e.time * 1000).toISOString() }, clock(e.time)),
      el("div", { class: failed ? "what fail" : "what" },
         el("span", { class: "kind" }, e.kind), e.summary,
         e.repeat > 1 ? el("span", { class: "repeat" }, `×${e.repeat}`) : null));
  });
  document.getElementById("timeline").replaceChildren(...items);
  document.getElementById("timeline-empty").hidden = items.length > 0;
}

function currentNodeId() {
  const m = location.hash.match(/^#\/node\/([0-9a-f-]+)$/);
  return m ? m[1] : null;
}

async function refresh() {
  const id = currentNodeId();
  document.getElementById("list-view").hidden = Boolean(id);
  document.getElementById("node-view").hidden = !id;
  try {
    if (id) await renderNode(id); else await renderList();
    showError("");
  } catch (err) {
    showError(`Cannot reach the server: ${err.message}`);
  }
}

function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 300);
}

function setLive(on, text) {
  const badgeEl = document.getElementById("live");
  badgeEl.className = `live ${on ? "on" : "off"}`;
  badgeEl.textContent = text;
}

function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(refresh, POLL_MS);
  setLive(false, "polling");
}

function stopPolling() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
}

function connect() {
  if (!("EventSource" in window)) { startPolling(); return; }
  const source = new EventSource("/api/stream");
  source.onopen = () => { streamOpen = true; stopPolling(); setLive(true, "live"); scheduleRefresh(); };
  source.onmessage = () => scheduleRefresh();
  source.onerror = () => {
    streamOpen = false;
    startPolling();  // EventSource reconnects by itself; poll meanwhile
  };
}

window.addEventListener("hashchange", refresh);
setInterval(() => { if (streamOpen) refresh(); }, 30000);  // keep "x min ago" current
refresh();
connect();
