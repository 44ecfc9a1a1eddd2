// LungLedger node page: diagnose, follow the record onto the chain, explore and verify.
// Plain ES module, no build step. Everything shown from the API goes through textContent.

const API = "/api/v1";
const TOKEN_KEY = "lungledger.apiToken";
const STATUS_INTERVAL_MS = 3000;
const MINED_POLL_MS = 1000;
const MINED_DEADLINE_MS = 120000;

const $ = (id) => document.getElementById(id);
let lastStatus = null;

// ------------------------------------------------------------------ helpers
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function shortHash(hex, size = 10) {
  return hex && hex.length > 2 * size ? `${hex.slice(0, size)}…${hex.slice(-6)}` : hex || "–";
}

function formatTime(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}

function percent(value, digits = 1) {
  return `${(100 * value).toFixed(digits)} %`;
}

function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (options.auth) headers.set("Authorization", `Bearer ${getToken()}`);
  const response = await fetch(`${API}${path}`, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiFailure(response.status, body.error || `http-${response.status}`, body.message || response.statusText);
  }
  return body;
}

function setState(node, text, kind = "") {
  node.textContent = text;
  node.className = `state ${kind}`;
}

function describeFailure(error) {
  if (error instanceof ApiFailure) {
    if (error.status === 401) return `${error.message} — enter the token at the top right.`;
    return `${error.message} (${error.code})`;
  }
  return `The node could not be reached: ${error.message}`;
}

// --------------------------------------------------------------------- tabs
function showTab(name) {
  for (const tab of ["diagnose", "explorer", "peers"]) {
    const selected = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(selected));
    $(`panel-${tab}`).hidden = !selected;
  }
  if (name === "explorer") loadBlocks();
  if (name === "peers") loadPeers();
}

// ------------------------------------------------------------------- status
async function refreshStatus() {
  try {
    const status = await api("/status");
    lastStatus = status;
    $("node-name").textContent = `${status.name} · node ${shortHash(status.node_id, 6)} · chain ${status.chain_name}`;
    $("status-height").textContent = status.height;
    $("status-tip").textContent = shortHash(status.tip_hash, 8);
    $("status-tip").title = status.tip_hash;
    $("status-pending").textContent = status.pending_records;
    $("status-peers").textContent = status.peer_count;
    $("footer-chain").textContent = `chain id ${shortHash(status.chain_id, 12)}`;
    const relayOnly = !status.diagnostics;
    $("diagnose-button").disabled = relayOnly;
    if (relayOnly) setState($("diagnose-state"), "This node is relay-only: it has no diagnostic plug-in.", "error");
  } catch (error) {
    $("node-name").textContent = "node unreachable";
  }
}

function showTokenState() {
  const set = Boolean(getToken());
  $("token-state").textContent = set ? "token set" : "not set";
  $("token-state").className = `token-state ${set ? "ok" : ""}`;
}

// ---------------------------------------------------------------- diagnose
function riskClass(level) {
  return `risk risk-${String(level).toLowerCase()}`;
}

const MODALITY_NAMES = { ct: "CT slice", xray: "Chest X-ray" };
const FACTOR_NAMES = { age: "Age", smoking: "Smoking", family_history: "Family history" };

function findingText(label) {
  return label === "affected" ? "Findings suggest cancer" : "No finding";
}

function signed(value) {
  return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(2)}`;
}

function factorValue(name, value) {
  if (value === null || value === undefined) return "unknown";
  if (name === "family_history") return value ? "yes" : "no";
  return String(value);
}

function renderModality(name, entry, file) {
  const heat = el("img", { src: `data:image/png;base64,${entry.heatmap_png}`, alt: `${MODALITY_NAMES[name] || name} heatmap`, class: "overlay" });
  const figure = el("figure", {});
  let base = null;
  if (entry.image_png) base = `data:image/png;base64,${entry.image_png}`;  // DICOM: the windowed greyscale render
  else if (file && /^image\/(png|jpeg)$/.test(file.type)) base = URL.createObjectURL(file);
  if (base) {
    figure.append(el("img", { src: base, alt: `${MODALITY_NAMES[name] || name} image`, class: "base" }), heat);
  } else {
    heat.className = "";
    figure.append(heat);
  }
  const above = entry.probability >= entry.threshold;
  const caption = el("figcaption", {},
    el("strong", {}, `${MODALITY_NAMES[name] || name}: ${percent(entry.probability)} (threshold ${percent(entry.threshold)})`),
    el("span", { class: "small" }, `${entry.model.name} ${entry.model.version} · ${entry.source_format.toUpperCase()} · ${above ? "above" : "below"} threshold`),
    el("span", { class: "mono small", title: entry.model.sha256 }, `model ${shortHash(entry.model.sha256, 8)}`));
  if (base) {
    const slider = el("input", { type: "range", min: "0", max: "100", value: "60", "aria-label": `${MODALITY_NAMES[name] || name} heatmap opacity` });
    heat.style.opacity = "0.6";
    slider.addEventListener("input", () => { heat.style.opacity = String(slider.value / 100); });
    caption.append(el("label", { class: "toggle" }, "Heatmap opacity", slider));
  }
  figure.append(caption);
  return el("div", { class: "modality", "data-modality": name }, figure);
}

function renderReasoning(result) {
  $("reasoning-models").replaceChildren(...Object.entries(result.modalities).map(([name, entry]) => el("tr", { "data-modality": name },
    el("td", {}, `${MODALITY_NAMES[name] || name} (${entry.model.name} ${entry.model.version})`),
    el("td", {}, percent(entry.probability)), el("td", {}, percent(entry.threshold)), el("td", {}, entry.weight.toFixed(2)))));
  const imageAbove = result.fused_probability >= result.fused_threshold;
  $("reasoning-fused").textContent = `${percent(result.fused_probability)} against the fused threshold ${percent(result.fused_threshold)} `
    + "(weighted mean of the models' log-odds, weights from each model's validated AUC).";
  $("reasoning-finding").textContent = `${findingText(result.label)}: the image score is ${imageAbove ? "at or above" : "below"} the threshold; `
    + `confidence ${Number(result.confidence).toFixed(0)} % (50 % at the threshold, 100 % at the extreme).`;
  const adjustment = result.risk_adjustment;
  const rows = Object.keys(FACTOR_NAMES).map((name) => el("tr", { "data-factor": name },
    el("td", {}, FACTOR_NAMES[name]), el("td", {}, factorValue(name, result.risk_factors[name])), el("td", {}, signed(adjustment[name]))));
  const sum = adjustment.age + adjustment.smoking + adjustment.family_history;
  rows.push(el("tr", { class: "total" }, el("td", {}, "Total"),
    el("td", {}, Math.abs(sum - adjustment.total) > 1e-9 ? `sum ${signed(sum)}, capped` : ""), el("td", {}, signed(adjustment.total))));
  $("reasoning-factors").replaceChildren(...rows);
  $("reasoning-risk").textContent = `risk score ${percent(result.adjusted_probability)} (image score ${percent(result.fused_probability)} `
    + `shifted by ${signed(adjustment.total)}) → ${result.risk_level}`
    + (result.label === "affected" ? " (never below Moderate when the images show a finding)." : ".");
}

function renderResult(reply, files, patientRef) {
  const result = reply.result;
  $("result").hidden = false;
  $("result-record").textContent = `record ${reply.record_id}`;
  $("result-record").dataset.recordId = reply.record_id;
  $("result-patient").textContent = patientRef ? `Patient reference ${patientRef} (kept only as a keyed hash)` : "No patient reference given";
  $("result-finding").textContent = findingText(result.label);
  $("result-finding").className = `metric-value finding-${result.label}`;
  $("result-risk").textContent = `${result.risk_level} risk`;
  $("result-risk").className = riskClass(result.risk_level);
  renderReasoning(result);
  $("result-modalities").replaceChildren(
    ...Object.entries(result.modalities).map(([name, entry]) => renderModality(name, entry, files[name])));
  $("result-recommendations").replaceChildren(...result.recommendations.map((text) => el("li", {}, text)));
  $("result-disclaimer").textContent = result.disclaimer;
  renderChainPosition(reply);
}

// Nothing of one patient may stay on screen or in the form for the next.
function clearResult() {
  $("result").hidden = true;
  $("result-record").textContent = "";
  delete $("result-record").dataset.recordId;
  for (const id of ["result-patient", "result-finding", "result-risk", "reasoning-fused", "reasoning-finding", "reasoning-risk",
                    "result-block-height", "result-block-hash"]) $(id).textContent = "";
  for (const id of ["reasoning-models", "reasoning-factors", "result-modalities", "result-recommendations"]) $(id).replaceChildren();
}

function clearForm() {
  $("diagnose-form").reset();
  for (const name of ["xray", "ct"]) {
    $(`${name}-input`).value = "";
    $(`${name}-name`).textContent = "no file chosen";
    $(`${name}-input`).closest(".drop").classList.remove("has-file");
  }
}

function newPatient() {
  clearResult();
  clearForm();
  setState($("diagnose-state"), "");
  $("xray-input").focus();
}

function renderChainPosition(position) {
  const mined = position.status === "mined";
  $("result-chain-state").textContent = mined
    ? `Recorded in block ${position.block_height} (${position.confirmations} confirmation${position.confirmations === 1 ? "" : "s"})`
    : "Stored and queued; waiting for a block…";
  $("result-chain-state").className = `chain-state ${mined ? "mined" : ""}`;
  $("result-block-height").textContent = mined ? position.block_height : "–";
  $("result-block-hash").textContent = mined ? position.block_hash : "–";
  return mined;
}

async function followRecord(recordId) {
  const deadline = Date.now() + MINED_DEADLINE_MS;
  while (Date.now() < deadline && $("result-record").dataset.recordId === recordId) {
    try {
      const position = await api(`/records/${recordId}`);
      if ($("result-record").dataset.recordId !== recordId) return;  // a new patient is on screen
      if (renderChainPosition(position)) {
        refreshStatus();
        return;
      }
    } catch (error) {
      if (!(error instanceof ApiFailure && error.status === 404)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, MINED_POLL_MS));
  }
}

async function submitDiagnosis(event) {
  event.preventDefault();
  const files = { xray: $("xray-input").files[0], ct: $("ct-input").files[0] };
  if (!files.xray && !files.ct) {
    setState($("diagnose-state"), "Choose an X-ray, a CT slice, or both.", "error");
    return;
  }
  const form = new FormData();
  for (const [name, file] of Object.entries(files)) if (file) form.append(name, file, file.name);
  for (const [name, id] of [["age", "age-input"], ["smoking", "smoking-input"], ["family_history", "family-input"],
                            ["patient_ref", "patient-input"]]) {
    if ($(id).value.trim()) form.append(name, $(id).value.trim());
  }
  const patientRef = $("patient-input").value.trim();
  clearResult();
  $("diagnose-button").disabled = true;
  setState($("diagnose-state"), "Analysing…");
  const started = performance.now();
  try {
    const reply = await api("/diagnoses", { method: "POST", body: form, auth: true });
    renderResult(reply, files, patientRef);
    clearForm();
    setState($("diagnose-state"), `Done in ${((performance.now() - started) / 1000).toFixed(1)} s; record stored. `
      + `The form is cleared for the next patient.`, "ok");
    $("result").focus();
    followRecord(reply.record_id).catch((error) => setState($("diagnose-state"), describeFailure(error), "error"));
  } catch (error) {
    clearResult();
    clearForm();
    setState($("diagnose-state"), `${describeFailure(error)} Nothing was recorded; the form was cleared so that no `
      + "details carry over to another patient.", "error");
  } finally {
    $("diagnose-button").disabled = !(lastStatus && lastStatus.diagnostics);
  }
}

// ---------------------------------------------------------------- explorer
async function loadBlocks() {
  try {
    const reply = await api("/blocks?limit=15");
    const rows = reply.blocks.slice().reverse().map((block) => el("tr", { "data-height": block.height, onclick: () => showBlock(block) },
      el("td", {}, block.height),
      el("td", { class: "mono", title: block.hash }, shortHash(block.hash, 12)),
      el("td", {}, block.miner_name || (block.height === 0 ? "genesis" : shortHash(block.miner_id, 6))),
      el("td", {}, block.record_count),
      el("td", {}, formatTime(block.timestamp_ms))));
    $("blocks-body").replaceChildren(...rows);
  } catch (error) {
    $("blocks-body").replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "5" }, describeFailure(error))));
  }
}

function kvList(target, pairs) {
  target.replaceChildren(...pairs.flatMap(([key, value, mono]) => [
    el("dt", {}, key), el("dd", mono ? { class: "mono" } : {}, value ?? "–")]));
}

function showBlock(block) {
  $("block-detail").hidden = false;
  $("block-detail-height").textContent = `#${block.height}`;
  kvList($("block-detail-fields"), [
    ["Hash", block.hash, true], ["Previous", block.prev_hash, true], ["Merkle root", block.merkle_root, true],
    ["Time", formatTime(block.timestamp_ms)], ["Miner", block.miner_name || block.miner_id],
    ["Difficulty", block.difficulty], ["Nonce", block.nonce], ["Confirmations", block.confirmations],
    ["Size", `${block.size_bytes} bytes`], ["Header (hex)", block.header_hex, true]]);
  const items = block.record_ids.map((recordId) => el("li", {},
    el("button", { type: "button", class: "link mono", onclick: () => showRecord(recordId) }, recordId)));
  $("block-detail-records").replaceChildren(...(items.length ? items : [el("li", {}, "no records (genesis)")]));
  for (const row of $("blocks-body").children) row.classList.toggle("selected", row.dataset.height === String(block.height));
}

async function showRecord(recordId) {
  const reply = await api(`/records/${recordId}`);
  const record = reply.record;
  $("record-detail").hidden = false;
  $("record-detail").dataset.recordId = record.record_id;
  $("record-verify-result").hidden = true;
  kvList($("record-detail-fields"), [
    ["Record id", record.record_id, true], ["Status", reply.status],
    ["Block", reply.block_height ?? "pending"], ["Block hash", reply.block_hash, true],
    ["Confirmations", reply.confirmations], ["Hospital", record.member_name || record.member_id],
    ["Created", formatTime(record.created_ms)], ["Modalities", record.modalities.join(", ")],
    ["Probabilities", record.probabilities_ppm.map((ppm) => percent(ppm / 1e6)).join(", ")],
    ["Fused", percent(record.fused_ppm / 1e6)], ["Label", record.label],
    ["Risk level", el("span", { class: `tag risk-${record.risk_level.toLowerCase()}` }, record.risk_level)],
    ["Image digests (keyed)", record.image_digests.join(" "), true], ["Model ids", record.model_ids.join(" "), true],
    ["Details digest", record.details_digest, true],
    ["Merkle proof", reply.merkle_proof ? `${reply.merkle_proof.length} step(s) to root ${shortHash(reply.merkle_root, 8)}` : "–"]]);
  return reply;
}

async function verifyShownRecord() {
  const recordId = $("record-detail").dataset.recordId;
  const box = $("record-verify-result");
  try {
    const reply = await api(`/records/${recordId}/verify`);
    box.className = `verify verify-${reply.status}`;
    box.replaceChildren(el("strong", {}, reply.status), " — ", reply.reason);
  } catch (error) {
    box.className = "verify verify-tampered";
    box.textContent = describeFailure(error);
  }
  box.hidden = false;
}

async function lookup(event) {
  event.preventDefault();
  const state = $("lookup-state");
  const recordId = $("lookup-record").value.trim().toLowerCase();
  const height = $("lookup-height").value.trim();
  const hash = $("lookup-hash").value.trim().toLowerCase();
  setState(state, "");
  try {
    if (recordId) {
      await showRecord(recordId);
    } else if (height !== "" || hash) {
      const block = await api(`/blocks/${height !== "" ? height : hash}`);
      if (height !== "" && hash && block.hash !== hash) {
        setState(state, `Block ${height} on this node's chain has hash ${shortHash(block.hash)}, not the one given.`, "error");
        return;
      }
      showBlock(block);
      if (block.record_ids.length === 1) await showRecord(block.record_ids[0]);
    } else {
      setState(state, "Enter a record id, or a block number and/or hash.", "error");
    }
  } catch (error) {
    setState(state, describeFailure(error), "error");
  }
}

async function verifyChain() {
  const state = $("chain-verify-state");
  setState(state, "Re-validating every block…");
  try {
    const report = await api("/chain/verify");
    if (report.status === "valid") {
      setState(state, `Valid: ${report.blocks_checked} blocks, ${report.records_checked} records checked in ${report.elapsed_ms} ms.`, "ok");
    } else {
      const bad = report.first_bad_block;
      setState(state, `Invalid from block ${bad.height}: ${bad.error} ${bad.message || ""}`, "error");
    }
  } catch (error) {
    setState(state, describeFailure(error), "error");
  }
}

async function openResultRecord() {
  const recordId = $("result-record").dataset.recordId;
  showTab("explorer");
  $("lookup-record").value = recordId;
  try {
    const reply = await showRecord(recordId);
    if (reply.block_hash) showBlock(await api(`/blocks/${reply.block_hash}`));
  } catch (error) {
    setState($("lookup-state"), describeFailure(error), "error");
  }
}

// -------------------------------------------------------------------- peers
async function loadPeers() {
  try {
    const reply = await api("/peers");
    const rows = reply.peers.map((peer) => el("tr", {},
      el("td", {}, peer.name || shortHash(peer.peer_id || "", 6)),
      el("td", { class: "mono" }, peer.address || "–"),
      el("td", {}, peer.height ?? "–"),
      el("td", {}, peer.direction || "–"),
      el("td", {}, peer.ping_ms == null ? "–" : `${peer.ping_ms} ms`),
      el("td", {}, peer.connected_s == null ? "–" : `${Math.round(peer.connected_s)} s`)));
    $("peers-body").replaceChildren(...(rows.length ? rows
      : [el("tr", { class: "empty" }, el("td", { colspan: "6" }, "No peers connected."))]));
    $("peers-note").textContent = reply.bootstrap.length ? `Bootstrap peers: ${reply.bootstrap.join(", ")}` : "";
  } catch (error) {
    $("peers-body").replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "6" }, describeFailure(error))));
  }
  if (lastStatus) {
    $("members-list").replaceChildren(...lastStatus.members.map((member) =>
      el("li", {}, `${member.name} `, el("span", { class: "mono small" }, member.member_id))));
  }
}

// --------------------------------------------------------------------- wiring
function init() {
  for (const tab of ["diagnose", "explorer", "peers"]) $(`tab-${tab}`).addEventListener("click", () => showTab(tab));
  $("token-input").value = getToken();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    showTokenState();
  });
  for (const name of ["xray", "ct"]) {
    $(`${name}-input`).addEventListener("change", () => {
      const file = $(`${name}-input`).files[0];
      $(`${name}-name`).textContent = file ? file.name : "no file chosen";
      $(`${name}-input`).closest(".drop").classList.toggle("has-file", Boolean(file));
    });
  }
  $("diagnose-form").addEventListener("submit", submitDiagnosis);
  $("new-patient").addEventListener("click", newPatient);
  $("new-patient-result").addEventListener("click", newPatient);
  $("result-open-record").addEventListener("click", openResultRecord);
  $("blocks-refresh").addEventListener("click", loadBlocks);
  $("peers-refresh").addEventListener("click", loadPeers);
  $("chain-verify-button").addEventListener("click", verifyChain);
  $("record-verify-button").addEventListener("click", verifyShownRecord);
  $("lookup-form").addEventListener("submit", lookup);
  showTokenState();
  refreshStatus();
  setInterval(refreshStatus, STATUS_INTERVAL_MS);
}

init();
