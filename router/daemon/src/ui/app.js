// Ferry's status page: reads the node's API, follows /ferry/events.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const bytes = (n) => n >= 1 << 20 ? (n / 1048576).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
const when = (ms) => ms ? new Date(ms).toLocaleString() : "";
// Bundle times are DTN times: milliseconds since 2000-01-01 UTC (RFC 9171).
const DTN_EPOCH_MS = 946684800000;
const empty = (cols, text) => '<tr><td colspan="' + cols + '" class="muted">' + esc(text) + "</td></tr>";
let bundles = [];

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function row(cells) {
  return "<tr>" + cells.map((c) => "<td" + (c.cls ? ' class="' + c.cls + '"' : "") + ">" + (c.html ?? esc(c)) + "</td>").join("") + "</tr>";
}

async function refresh() {
  const [info, peers, traffic, list, apps, contacts] = await Promise.all([
    get("/status/info"), get("/status/peers"), get("/ferry/peers/traffic"), get("/ferry/bundles"),
    get("/ferry/apps").catch(() => []), get("/ferry/contacts").catch(() => []),
  ]);
  $("node-id").textContent = info.node_id;
  document.title = "Ferry " + info.node_id;
  $("summary").textContent = `${info.version} · ${info.router} routing · ${info.bundles} bundles held · store ${info.store_bundles} bundles, ${bytes(info.store_bytes)} · ${info.peers_connected} of ${info.peers} peers up · up ${info.uptime_secs} s`;

  const rows = [];
  const seen = new Set();
  for (const t of traffic) {
    seen.add(t.node_id);
    rows.push(row([{ html: esc(t.node_id), cls: "mono" }, t.cla, { html: esc(t.address), cls: "mono" }, { html: '<span class="up">up</span>' }, when(t.up_since_ms), `${t.bundles_in} / ${t.bundles_out}`, `${bytes(t.bytes_in)} / ${bytes(t.bytes_out)}`]));
  }
  for (const [eid, p] of Object.entries(peers)) {
    if (seen.has(eid)) continue;
    const state = p.connected ? '<span class="up">up</span>' : '<span class="down">down</span>';
    rows.push(row([{ html: esc(eid), cls: "mono" }, p.cla, { html: esc(p.addr + (p.port ? ":" + p.port : "")), cls: "mono" }, { html: state }, "", "", ""]));
  }
  $("peers").tBodies[0].innerHTML = rows.join("") || empty(7, "no peers");

  bundles = list;
  const states = {};
  for (const b of list) states[b.state] = (states[b.state] || 0) + 1;
  $("bundle-count").textContent = "(" + list.length + ")";
  $("by-state").textContent = Object.entries(states).map(([s, n]) => s + ": " + n).join(" · ");
  renderBundles();

  $("contacts").tBodies[0].innerHTML = contacts.map((c) => row([{ html: esc(c.from), cls: "mono" }, { html: esc(c.to), cls: "mono" },
    { html: c.state === "now" ? '<span class="up">now</span>' : "planned" }, when(c.start_ms), when(c.end_ms), bytes(c.rate_bps) + "/s", c.owlt_ms + " ms"])).join("")
    || empty(7, info.router === "cgr" ? "no contact of this node ahead in the plan" : "no contact plan (the cgr router uses one)");
  $("apps").tBodies[0].innerHTML = apps.map((a) => row([a.name, a.state, (a.endpoints || []).join(", "), a.delivered, `${a.failures} / ${a.traps} / ${a.restarts}`, a.last_error || ""])).join("")
    || empty(6, "no apps");
}

function renderBundles() {
  const q = $("search").value.trim().toLowerCase();
  const shown = bundles.filter((b) => !q || [b.bid, b.src, b.dst, b.state].some((f) => String(f).toLowerCase().includes(q))).slice(0, 500);
  $("bundles").tBodies[0].innerHTML = shown.map((b) => row([{ html: esc(b.bid), cls: "mono" }, { html: esc(b.src), cls: "mono" }, { html: esc(b.dst), cls: "mono" }, b.state, bytes(b.size), when(b.expires_at + DTN_EPOCH_MS)])).join("")
    || empty(6, q ? "no bundle matches" : "the store is empty");
}

function addEvent(e) {
  const li = document.createElement("li");
  li.className = e.kind;
  li.innerHTML = "<time>" + esc(new Date(e.at_ms).toLocaleTimeString()) + "</time><b>" + esc(e.kind) + "</b> " + esc(e.text);
  const list = $("events");
  list.insertBefore(li, list.firstChild);
  while (list.children.length > 200) list.removeChild(list.lastChild);
}

let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh().catch(show); }, 300);
}

function show(err) {
  $("live").textContent = "error: " + err.message;
  $("live").className = "badge";
}

async function start() {
  $("search").addEventListener("input", renderBundles);
  await refresh().catch(show);
  for (const e of await get("/ferry/events/recent").catch(() => [])) addEvent(e);
  const source = new EventSource("/ferry/events");
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "badge on"; };
  source.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "badge"; };
  for (const kind of ["peer_up", "peer_down", "delivered", "deleted", "warning"]) {
    source.addEventListener(kind, (m) => { addEvent(JSON.parse(m.data)); soon(); });
  }
  // Bundles arriving and leaving are not events: look again now and then.
  setInterval(soon, 5000);
}

start();
