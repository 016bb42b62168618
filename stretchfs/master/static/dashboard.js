// The StretchFS dashboard: polls /dashboard/state and renders it (textContent only).
"use strict";

const REFRESH_MS = 2000;

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function time(epoch) {
  return epoch ? new Date(epoch * 1000).toISOString().slice(11, 19) + " UTC" : "";
}

function addCell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function nodeRow(node) {
  const tr = document.createElement("tr");
  tr.dataset.node = node.name;
  addCell(tr, node.name);
  addCell(tr, node.role);
  addCell(tr, (node.site || "-") + " / " + (node.zone || "-"));
  const probe = node.probe || {};
  addCell(tr, node.health, "health " + node.health).title = probe.error || "";
  const net = node.pingnet;
  if (!net) {
    addCell(tr, "-", "pingnet unknown");
  } else if (net.available) {
    addCell(tr, "available (" + net.votes + ")", "pingnet ok");
  } else {
    const since = net.since ? " since " + time(net.since) : "";
    addCell(tr, "DOWN" + since + " (" + net.votes + ": " + net.voters.join(", ") + ")",
            "pingnet down");
  }
  if (probe.disk) {
    addCell(tr, bytes(probe.disk.free) + " of " + bytes(probe.disk.total));
  } else {
    addCell(tr, "-");
  }
  addCell(tr, node.rows);
  const flags = [node.active ? "active" : "inactive", node.writable ? "writable" : "read-only"];
  addCell(tr, flags.join(", "), node.active && node.writable ? "" : "bad");
  addCell(tr, node.url);
  return tr;
}

function pairRow(label, value) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = label;
  tr.appendChild(th);
  addCell(tr, value);
  return tr;
}

function mirrorRows(node) {
  const mirrors = (node.probe && node.probe.mirrors) || {};
  return Object.keys(mirrors).map((kind) => {
    const m = mirrors[kind];
    const tr = document.createElement("tr");
    addCell(tr, node.name);
    addCell(tr, kind);
    addCell(tr, m.entries);
    addCell(tr, m.cursor);
    const lag = m.lag_seconds;
    addCell(tr, lag === null ? "not loaded" : lag === 0 ? "in step" : lag.toFixed(1) + " s",
            lag === 0 ? "ok" : "bad");
    return tr;
  });
}

function render(state) {
  document.getElementById("master").textContent =
    "· master " + state.node + " · version " + state.version;
  fill("nodes", state.nodes.map(nodeRow));
  const c = state.copies;
  fill("copies", [pairRow("1", c["1"]), pairRow("2", c["2"]), pairRow("3+", c["3+"])]);
  document.getElementById("copies-note").textContent = c.complete ? "" :
    "counters started after some content was stored: the counts are incomplete";
  fill("counts", [
    pairRow("content (distinct hashes)", state.counts.content),
    pairRow("purchases", state.counts.purchases),
    pairRow("users", state.counts.users),
    pairRow("inventory feed cursor", state.cursors.inventory),
    pairRow("purchase feed cursor", state.cursors.purchases),
    pairRow("feed long-polls waiting", state.long_polls),
  ]);
  fill("mirrors", state.nodes.filter((n) => n.role === "prism").flatMap(mirrorRows));
  fill("repair", repairRows(state.repair));
}

function repairRows(r) {
  const counted = Object.keys(r.copies).map((label) => label + ": " + r.copies[label]);
  return [
    pairRow("planner", (r.planner.owner || "none") + (r.planner.live ? "" : " (not live)")),
    pairRow("queue", r.queue),
    pairRow("hashes by counted copies", r.scanned === null ? "not scanned yet" :
            counted.join(" · ") + " (scanned " + time(r.scanned) + ")"),
    pairRow("repaired", r.repaired.copies + " copies, " + r.repaired.bytes + " bytes, " +
            r.repaired.failures + " failed attempts, " + r.repaired.trims + " trimmed"),
  ].concat(Object.keys(r.stores).sort().map((name) =>
    pairRow("store " + name, r.stores[name].state + " since " + time(r.stores[name].since))),
  Object.keys(r.draining).sort().map((name) =>
    pairRow("store " + name, "drained, " + (r.draining[name] ?
      r.draining[name] + " hashes still short of copies elsewhere" :
      "everything it holds has its copies elsewhere (it can be removed)"))));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const reply = await fetch("/dashboard/state", {credentials: "same-origin", cache: "no-store"});
    if (reply.status === 401) {
      window.location.assign("/login");
      return;
    }
    const state = await reply.json();
    if (!reply.ok) throw new Error(state.error || "HTTP " + reply.status);
    render(state);
    status.textContent = "updated " + time(state.now);
    status.className = "status";
  } catch (error) {
    status.textContent = "not refreshed: " + error.message;
    status.className = "status bad";
  }
  window.setTimeout(refresh, REFRESH_MS);
}

refresh();
