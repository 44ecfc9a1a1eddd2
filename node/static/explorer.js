// Chain explorer: pages through the whole best chain, block and record details with copy buttons,
// a check-by-check verification report, whole-chain verification. Deep links: #/block/N, #/record/ID.

import { $, api, describeFailure, el, finalityText, isoTime, kvList, percent, setState, shortHash, timeElement } from "./common.js";

const PAGE = 15;
let pageStart = null;  // first height shown; null: follow the newest blocks

const CHECK_TEXT = {
  signature: ["Signature", "the record is signed by the hospital named as its creator, with the key in the genesis file"],
  merkle_proof: ["Merkle proof", "the block's Merkle root commits to this exact record, so it cannot be changed without changing the block"],
  details_readable: ["Off-chain details readable", "this node holds the record's details and can read them"],
  commitment_matches_chain: ["Commitment", "the details hash to the digest recorded on chain"],
  result_matches_commitment: ["Result", "the stored result (with its heatmaps) is the one committed to"],
  record_id_matches: ["Record id", "the stored details belong to this record"],
};

const STATUS_TEXT = {
  intact: "Intact: the signed record is in a block and this node's off-chain details match what it committed to.",
  pending: "Pending: the details match the record, which is waiting to be mined into a block.",
  "no-local-details": "No local details: normal for another hospital's record. The signature and Merkle checks passed; "
    + "only the hospital that ran the diagnosis holds its details, so ask that node to verify them.",
  tampered: "Tampered: a check failed, so what this node stores no longer matches what was signed and mined. Do not rely "
    + "on this result; keep the data as it is and tell the node's administrator, who can compare it with backups and the "
    + "audit log.",
  "not-found": "Not found: no such record on this node's best chain or waiting to be mined. Check the id, or wait for the node to sync.",
  orphaned: "Orphaned: details exist here but the record is on no chain this node follows; its block may have lost a fork. "
    + "Ask the administrator to resubmit it.",
};

// -------------------------------------------------------------------- blocks
export async function loadBlocks() {
  const height = Number($("status-height").textContent) || 0;
  try {
    const start = pageStart === null ? null : Math.max(0, pageStart);
    const reply = await api(`/blocks?limit=${PAGE}${start === null ? "" : `&start=${start}`}`);
    const rows = reply.blocks.slice().reverse().map((block) => el("tr", { "data-height": block.height },
      el("td", {}, el("button", { type: "button", class: "link", title: `Open block ${block.height}`,
        onclick: () => { location.hash = `#/block/${block.height}`; } }, block.height)),
      el("td", { class: "mono", title: block.hash }, shortHash(block.hash, 8)),
      el("td", {}, block.miner_name || (block.height === 0 ? "genesis" : shortHash(block.miner_id, 6))),
      el("td", {}, block.record_count),
      el("td", {}, timeElement(block.timestamp_ms))));
    $("blocks-body").replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: "5" }, "No blocks here."))]));
    const first = reply.blocks.length ? reply.blocks[0].height : reply.start;
    const last = reply.blocks.length ? reply.blocks[reply.blocks.length - 1].height : reply.start;
    $("blocks-range").textContent = `blocks ${first}–${last} of ${reply.height + 1}${pageStart === null ? " · live" : ""}`;
    $("blocks-range").dataset.first = first;
    $("blocks-range").dataset.last = last;
    $("blocks-older").disabled = first === 0;
    $("blocks-oldest").disabled = first === 0;
    $("blocks-newer").disabled = last >= reply.height;
    $("blocks-newest").disabled = pageStart === null;
  } catch (error) {
    $("blocks-body").replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "5" }, describeFailure(error))));
  }
  return height;
}

function page(direction) {
  const first = Number($("blocks-range").dataset.first || 0);
  const last = Number($("blocks-range").dataset.last || 0);
  if (direction === "newest") pageStart = null;
  else if (direction === "oldest") pageStart = 0;
  else if (direction === "older") pageStart = Math.max(0, first - PAGE);
  else pageStart = last + 1;
  const tip = Number($("status-height").textContent);
  if (pageStart !== null && Number.isFinite(tip) && pageStart > tip) pageStart = null;
  loadBlocks();
}

// Called when the live stream reports a new tip: only the newest page moves.
export function onNewTip() {
  if (!$("panel-explorer").hidden && pageStart === null) loadBlocks();
}

export async function showBlock(ref) {
  try {
    const block = await api(`/blocks/${ref}`);
    $("block-detail").hidden = false;
    $("block-detail-height").textContent = `#${block.height}`;
    kvList($("block-detail-fields"), [
      ["Hash", block.hash, { mono: true, copy: true }], ["Previous", block.prev_hash, { mono: true, copy: true }],
      ["Merkle root", block.merkle_root, { mono: true, copy: true }],
      ["Time", timeElement(block.timestamp_ms)], ["Miner", block.miner_name || block.miner_id],
      ["Difficulty", block.difficulty], ["Nonce", block.nonce], ["Confirmations", finalityText(block.confirmations, block.finality)],
      ["Size", `${block.size_bytes} bytes`], ["Header (hex)", block.header_hex, { mono: true }]]);
    const items = block.record_ids.map((recordId) => el("li", {},
      el("a", { href: `#/record/${recordId}`, class: "link mono" }, recordId)));
    $("block-detail-records").replaceChildren(...(items.length ? items : [el("li", {}, block.height === 0 ? "no records (genesis)" : "no records")]));
    for (const row of $("blocks-body").children) row.classList.toggle("selected", row.dataset.height === String(block.height));
    return block;
  } catch (error) {
    setState($("lookup-state"), describeFailure(error), "error");
    return null;
  }
}

// -------------------------------------------------------------------- records
export async function showRecord(recordId, verify = false) {
  const reply = await api(`/records/${recordId}`);
  const record = reply.record;
  $("record-detail").hidden = false;
  $("record-detail").dataset.recordId = record.record_id;
  $("record-verify-result").hidden = true;
  kvList($("record-detail-fields"), [
    ["Record id", record.record_id, { mono: true, copy: true }], ["Status", reply.status],
    ["Block", reply.block_height !== null && reply.block_height !== undefined
      ? el("a", { href: `#/block/${reply.block_height}` }, String(reply.block_height)) : "pending"],
    ["Block hash", reply.block_hash, { mono: true, copy: true }],
    ["Confirmations", finalityText(reply.confirmations, reply.finality)], ["Hospital", record.member_name || record.member_id],
    ["Created", timeElement(record.created_ms)], ["Modalities", record.modalities.join(", ")],
    ["Model probabilities", record.probabilities_ppm.map((ppm) => percent(ppm / 1e6)).join(", ")],
    ["Fused image score", percent(record.fused_ppm / 1e6)],
    ["Image finding", record.label === "affected" ? "findings suggest cancer" : "no finding"],
    ["Risk level", el("span", { class: `tag risk-${record.risk_level.toLowerCase()}` }, record.risk_level)],
    ["Image digests (keyed)", record.image_digests.join(" "), { mono: true }],
    ["Model ids", record.model_ids.join(" "), { mono: true }],
    ["Details digest", record.details_digest, { mono: true, copy: true }],
    ["Signature", record.signature, { mono: true }],
    ["Merkle proof", reply.merkle_proof ? `${reply.merkle_proof.length} step(s) to root ${shortHash(reply.merkle_root, 8)}` : "–"]]);
  if (verify) await verifyShownRecord();
  return reply;
}

export async function verifyShownRecord() {
  const recordId = $("record-detail").dataset.recordId;
  const box = $("record-verify-result");
  try {
    const reply = await api(`/records/${recordId}/verify`);
    box.className = `verify verify-${reply.status}`;
    const checks = Object.entries(reply.checks).map(([name, ok]) => {
      const [title, meaning] = CHECK_TEXT[name] || [name, ""];
      return el("li", { class: ok ? "pass" : "fail", "data-check": name },
        el("strong", {}, `${ok ? "✓ passed" : "✗ failed"}: ${title}`), ` — ${meaning}`);
    });
    box.replaceChildren(el("p", {}, el("strong", {}, reply.status), ` — ${reply.reason}`),
      el("p", { class: "small" }, STATUS_TEXT[reply.status] || ""),
      el("ul", { class: "checks" }, ...checks),
      el("p", { class: "small" }, `Checked ${isoTime(Date.now())}.`));
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
      location.hash = `#/record/${recordId}`;
    } else if (height !== "" || hash) {
      const block = await api(`/blocks/${height !== "" ? height : hash}`);
      if (height !== "" && hash && block.hash !== hash) {
        setState(state, `Block ${height} on this node's chain has hash ${shortHash(block.hash)}, not the one given.`, "error");
        return;
      }
      location.hash = `#/block/${block.height}`;
    } else {
      setState(state, "Enter a record id, or a block number and/or hash.", "error");
    }
  } catch (error) {
    setState(state, describeFailure(error), "error");
  }
}

async function verifyChain() {
  const state = $("chain-verify-state");
  setState(state, "Re-validating every block from genesis…");
  try {
    const report = await api("/chain/verify");
    if (report.status === "valid") {
      setState(state, `Valid: ${report.blocks_checked} blocks and ${report.records_checked} records re-checked in ${report.elapsed_ms} ms.`, "ok");
    } else {
      const bad = report.first_bad_block;
      setState(state, `Invalid from block ${bad.height}: ${bad.error} ${bad.message || ""}. This node's stored chain is `
        + "damaged from there on; tell its administrator (a resync from peers repairs it).", "error");
    }
  } catch (error) {
    setState(state, describeFailure(error), "error");
  }
}

export async function openRecordLink(recordId) {
  setState($("lookup-state"), "");
  $("lookup-record").value = recordId;
  try {
    const reply = await showRecord(recordId, true);
    if (reply.block_hash) await showBlock(reply.block_hash);
    $("record-detail").scrollIntoView({ block: "nearest" });
  } catch (error) {
    $("record-detail").hidden = true;
    setState($("lookup-state"), describeFailure(error), "error");
  }
}

export function initExplorer() {
  $("blocks-newest").addEventListener("click", () => page("newest"));
  $("blocks-newer").addEventListener("click", () => page("newer"));
  $("blocks-older").addEventListener("click", () => page("older"));
  $("blocks-oldest").addEventListener("click", () => page("oldest"));
  $("chain-verify-button").addEventListener("click", verifyChain);
  $("record-verify-button").addEventListener("click", verifyShownRecord);
  $("lookup-form").addEventListener("submit", lookup);
}
