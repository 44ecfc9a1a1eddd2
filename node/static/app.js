// LungLedger node page: sign in, diagnose, worklist, explore and verify the chain, peers, audit log.
// Plain ES modules, no build step. Routes live in the hash: #/diagnose, #/worklist, #/explorer,
// #/block/N, #/record/ID, #/peers, #/audit, #/report/ID.

import { $, api, ApiFailure, describeFailure, el, findingText, riskClass, setState, shortHash, state, timeElement } from "./common.js";
import { clearForm, clearResult, currentRecordId, initDiagnose, openDiagnosis, renderReport } from "./diagnose.js";
import { initExplorer, loadBlocks, onNewTip, openRecordLink, showBlock } from "./explorer.js";

const TABS = ["diagnose", "worklist", "explorer", "peers", "audit"];
const NEEDS_SIGN_IN = new Set(["diagnose", "worklist", "audit"]);
const STATUS_INTERVAL_MS = 5000;
const WORKLIST_PAGE = 20;
const AUDIT_PAGE = 25;
let worklistOffset = 0;
let auditOffset = 0;

// --------------------------------------------------------------------- tabs
function visibleTabs() {
  return TABS.filter((tab) => !$(`tab-${tab}`).hidden);
}

function selectTab(name) {
  const signedOut = NEEDS_SIGN_IN.has(name) && !state.session;
  for (const tab of TABS) {
    const selected = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(selected));
    $(`tab-${tab}`).tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected || signedOut;
  }
  $("panel-report").hidden = true;
  $("signin").hidden = !signedOut;
  if (signedOut) return;
  if (name === "explorer") loadBlocks();
  if (name === "peers") loadPeers().then(() => loadFederated(state.status));
  if (name === "worklist") loadWorklist();
  if (name === "audit") loadAudit();
}

function onTabKey(event) {
  const tabs = visibleTabs();
  const index = tabs.indexOf(event.currentTarget.id.slice(4));
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
  location.hash = `#/${next}`;
  $(`tab-${next}`).focus();
}

async function route() {
  const [, section = "diagnose", argument] = location.hash.split("/");
  if (section === "block" && argument !== undefined) {
    selectTab("explorer");
    const block = await showBlock(argument);
    if (block) $("block-detail").scrollIntoView({ block: "nearest" });
  } else if (section === "record" && argument) {
    selectTab("explorer");
    await openRecordLink(argument);
  } else if (section === "report" && argument) {
    await showReport(argument);
  } else if (section === "open" && argument) {
    selectTab("diagnose");
    if (state.session && currentRecordId() !== argument) await openDiagnosis(argument);
  } else {
    selectTab(TABS.includes(section) && !$(`tab-${section}`).hidden ? section : "diagnose");
  }
}

async function showReport(recordId) {
  if (!state.session) {
    selectTab("diagnose");
    return;
  }
  for (const tab of TABS) $(`panel-${tab}`).hidden = true;
  $("signin").hidden = true;
  $("panel-report").hidden = false;
  try {
    await renderReport(recordId);
    $("panel-report").focus();
  } catch (error) {
    $("report-fields").replaceChildren(el("dt", {}, "Error"), el("dd", {}, describeFailure(error)));
  }
}

// ------------------------------------------------------------------- status
async function refreshStatus() {
  try {
    const status = await api("/status");
    state.status = status;
    $("node-name").textContent = `${status.name} · node ${shortHash(status.node_id, 6)} · chain ${status.chain_name}`;
    showTip(status.height, status.tip_hash);
    $("status-pending").textContent = status.pending_records;
    $("status-peers").textContent = status.peer_count;
    $("footer-chain").textContent = `chain id ${shortHash(status.chain_id, 12)}`;
    const relayOnly = !status.diagnostics;
    $("diagnose-button").disabled = relayOnly;
    if (relayOnly) setState($("diagnose-state"), "This node is relay-only: it has no diagnostic plug-in.", "error");
  } catch {
    $("node-name").textContent = "node unreachable";
  }
}

function showTip(height, tipHash) {
  $("status-height").textContent = height;
  $("status-tip").textContent = shortHash(tipHash, 8);
  $("status-tip").title = tipHash;
}

function startLiveUpdates() {
  if (!window.EventSource) {
    $("live-state").textContent = "polling";
    return;
  }
  const source = new EventSource("/api/v1/events");
  source.addEventListener("open", () => { $("live-state").textContent = "live"; });
  source.addEventListener("error", () => { $("live-state").textContent = "reconnecting"; });
  source.addEventListener("tip", (event) => {
    const tip = JSON.parse(event.data);
    const moved = $("status-height").textContent !== String(tip.height) || $("status-tip").title !== tip.tip_hash;
    showTip(tip.height, tip.tip_hash);
    $("live-state").textContent = "live";
    if (moved) {
      onNewTip();
      refreshStatus();
    }
  });
}

// ------------------------------------------------------------------ sign-in
function showAccount() {
  const session = state.session;
  $("account-name").textContent = session ? `Signed in as ${session.user.username}${session.user.role === "admin" ? " (administrator)" : ""}` : "Not signed in";
  $("sign-out").hidden = !session;
  const admin = Boolean(session && session.user.role === "admin");
  $("tab-audit").hidden = !admin;
  $("worklist-scope-label").hidden = !admin;
}

async function signIn(event) {
  event.preventDefault();
  setState($("signin-state"), "Signing in…");
  $("signin-button").disabled = true;
  try {
    state.session = await api("/session", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("signin-user").value.trim(), password: $("signin-password").value }) });
    $("signin-form").reset();
    setState($("signin-state"), "");
    showAccount();
    await route();
    const panel = [...document.querySelectorAll("[role=tabpanel]")].find((node) => !node.hidden);
    if (panel) panel.focus();
  } catch (error) {
    $("signin-password").value = "";
    setState($("signin-state"), error instanceof ApiFailure ? error.message : describeFailure(error), "error");
  } finally {
    $("signin-button").disabled = false;
  }
}

function forgetPerson(message) {
  state.session = null;
  clearResult();
  clearForm();
  $("worklist-body").replaceChildren();
  $("audit-body").replaceChildren();
  showAccount();
  if (location.hash.startsWith("#/audit") || location.hash.startsWith("#/report") || location.hash.startsWith("#/open")) location.hash = "#/diagnose";
  route();
  setState($("signin-state"), message, message ? "error" : "");
}

async function signOut() {
  try { await api("/session", { method: "DELETE" }); } catch { /* the session may already be gone */ }
  forgetPerson("");
  setState($("signin-state"), "Signed out.", "ok");
}

async function restoreSession() {
  try {
    state.session = await api("/session");
  } catch {
    state.session = null;
  }
  showAccount();
}

// ----------------------------------------------------------------- worklist
async function loadWorklist() {
  const params = new URLSearchParams({ offset: String(worklistOffset), limit: String(WORKLIST_PAGE) });
  for (const [name, id] of [["patient_ref", "worklist-patient"], ["date", "worklist-date"], ["risk_level", "worklist-risk"]]) {
    if ($(id).value.trim()) params.set(name, $(id).value.trim());
  }
  if (!$("worklist-scope-label").hidden) params.set("scope", $("worklist-scope").value);
  setState($("worklist-state"), "Loading…");
  try {
    const reply = await api(`/worklist?${params}`);
    const rows = reply.items.map((item) => el("tr", { "data-record": item.record_id },
      el("td", {}, timeElement(item.created_ms)),
      el("td", {}, findingText(item.label)),
      el("td", {}, el("span", { class: riskClass(item.risk_level).replace("risk ", "tag ") }, item.risk_level)),
      el("td", {}, item.modalities.join(", ")),
      el("td", {}, item.status === "mined" ? el("a", { href: `#/block/${item.block_height}` }, `block ${item.block_height}`) : "pending"),
      el("td", {}, item.username),
      el("td", {}, el("a", { href: `#/open/${item.record_id}`, class: "open-link", title: item.record_id }, "Open ", el("span", { class: "mono" }, shortHash(item.record_id, 6))))));
    $("worklist-body").replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: "7" }, "No diagnoses match."))]));
    const last = Math.min(reply.offset + reply.items.length, reply.total);
    $("worklist-range").textContent = reply.total ? `${reply.offset + 1}–${last} of ${reply.total}` : "0 of 0";
    $("worklist-prev").disabled = reply.offset === 0;
    $("worklist-next").disabled = last >= reply.total;
    setState($("worklist-state"), `${reply.total} diagnos${reply.total === 1 ? "is" : "es"} (${reply.scope === "all" ? "everyone's" : "yours"}).`);
  } catch (error) {
    setState($("worklist-state"), describeFailure(error), "error");
  }
}

// -------------------------------------------------------------------- peers
async function loadPeers() {
  const status = state.status || await api("/status").catch(() => null);
  try {
    const reply = await api("/peers");
    const byId = new Map(reply.peers.map((peer) => [peer.peer_id, peer]));
    const ours = status ? status.height : 0;
    const rows = (status ? status.members : []).map((member) => {
      const self = status && member.member_id === status.node_id;
      const peer = byId.get(member.member_id) || reply.peers.find((item) => item.name === member.name);
      const online = self || Boolean(peer);
      const height = self ? ours : peer ? peer.height : null;
      const sync = height === null || height === undefined ? "unknown" : height >= ours ? "in sync" : `behind by ${ours - height}`;
      return el("tr", { "data-member": member.member_id },
        el("td", {}, `${member.name}${self ? " (this node)" : ""}`),
        el("td", {}, el("span", { class: `tag ${online ? "online" : "offline"}` }, online ? "online" : "offline")),
        el("td", {}, online ? sync : "–"),
        el("td", {}, height ?? "–"),
        el("td", { class: "mono" }, self ? location.host : peer ? peer.address || "–" : "–"),
        el("td", {}, peer && peer.ping_ms != null ? `${peer.ping_ms} ms` : "–"));
    });
    $("members-body").replaceChildren(...rows);
    $("peers-note").textContent = `${reply.count} peer connection(s). ${reply.bootstrap.length ? `Bootstrap peers: ${reply.bootstrap.join(", ")}.` : ""}`;
  } catch (error) {
    $("members-body").replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "6" }, describeFailure(error))));
  }
}

async function loadFederated(status) {
  const names = new Map((status ? status.members : []).map((member) => [member.member_id, member.name]));
  const nameOf = (memberId) => names.get(memberId) || memberId.slice(0, 8);
  try {
    const reply = await api("/federated");
    if (!reply.enabled) {
      $("federated-model").textContent = "This node takes no part in federated rounds.";
      $("federated-body").replaceChildren();
      return;
    }
    const served = reply.served
      ? `; diagnoses use the adopted head ${reply.served.head_digest.slice(0, 12)}… (model id ${reply.served.served_model_id.slice(0, 12)}…)`
      : "; diagnoses use the model's built-in head";
    $("federated-model").textContent = `${reply.modality} model ${reply.model_id.slice(0, 12)}…, head in use ${reply.head_digest.slice(0, 12)}…` +
      (reply.site_images === null ? " (this node trains on no local images)" : ` (${reply.site_images} local images)`) + served;
    const rows = reply.rounds.map((round) => el("tr", {},
      el("td", {}, `${round.number}`),
      el("td", {}, round.status),
      el("td", {}, round.adoption || "pending"),
      el("td", {}, round.participants.map((member) => `${nameOf(member)}${member in round.contributors ? " ✓" : ""}`).join(", ")),
      el("td", {}, Object.entries(round.excluded).map(([member, reason]) => `${nameOf(member)}: ${reason}`).join(", ") || "–"),
      el("td", { class: "mono" }, round.head_digest ? `${round.head_digest.slice(0, 12)}…` : "–")));
    $("federated-body").replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: "6" }, "No round yet."))]));
  } catch (error) {
    $("federated-body").replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "6" }, describeFailure(error))));
  }
}

// -------------------------------------------------------------------- audit
async function loadAudit() {
  try {
    const reply = await api(`/audit?offset=${auditOffset}&limit=${AUDIT_PAGE}`);
    $("audit-body").replaceChildren(...reply.entries.map((entry) => el("tr", {},
      el("td", {}, entry.seq), el("td", {}, timeElement(entry.time_ms)), el("td", {}, entry.username),
      el("td", {}, entry.action), el("td", { class: "mono" }, entry.target ? shortHash(entry.target, 8) : "–"),
      el("td", { class: "small" }, Object.entries(entry.detail).map(([key, value]) => `${key}: ${value}`).join(", ")))));
    const last = Math.min(reply.offset + reply.entries.length, reply.total);
    $("audit-range").textContent = `${reply.total ? reply.offset + 1 : 0}–${last} of ${reply.total}`;
    $("audit-prev").disabled = reply.offset === 0;
    $("audit-next").disabled = last >= reply.total;
    setState($("audit-state"), reply.chain_intact ? "Hash chain intact: no entry has been changed or removed."
      : `Hash chain broken at entry ${reply.first_bad_seq}: the log file was edited outside the node.`, reply.chain_intact ? "ok" : "error");
  } catch (error) {
    setState($("audit-state"), describeFailure(error), "error");
  }
}

// ------------------------------------------------------------------- wiring
function init() {
  for (const tab of TABS) {
    $(`tab-${tab}`).addEventListener("click", () => { location.hash = `#/${tab}`; });
    $(`tab-${tab}`).addEventListener("keydown", onTabKey);
  }
  state.onSignedOut = () => forgetPerson("Your session has ended; sign in again.");
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  initDiagnose((recordId) => { location.hash = `#/record/${recordId}`; }, (recordId) => { location.hash = `#/report/${recordId}`; });
  initExplorer();
  $("worklist-form").addEventListener("submit", (event) => { event.preventDefault(); worklistOffset = 0; loadWorklist(); });
  $("worklist-prev").addEventListener("click", () => { worklistOffset = Math.max(0, worklistOffset - WORKLIST_PAGE); loadWorklist(); });
  $("worklist-next").addEventListener("click", () => { worklistOffset += WORKLIST_PAGE; loadWorklist(); });
  $("audit-refresh").addEventListener("click", loadAudit);
  $("audit-prev").addEventListener("click", () => { auditOffset = Math.max(0, auditOffset - AUDIT_PAGE); loadAudit(); });
  $("audit-next").addEventListener("click", () => { auditOffset += AUDIT_PAGE; loadAudit(); });
  $("peers-refresh").addEventListener("click", () => loadPeers().then(() => loadFederated(state.status)));
  $("report-print").addEventListener("click", () => window.print());
  $("report-back").addEventListener("click", () => history.back());
  window.addEventListener("hashchange", route);
  restoreSession().then(route);
  refreshStatus();
  startLiveUpdates();
  window.setInterval(refreshStatus, STATUS_INTERVAL_MS);
}

init();
