// Diagnose screen: the upload form, the result with its reasoning, the image viewer, the new-patient flow
// and the printable report. Nothing of one patient may stay on screen or in the form for the next.

import {
  $, api, ApiFailure, describeFailure, el, FACTOR_NAMES, finalityText, findingText, isoTime, kvList, MODALITY_NAMES, percent,
  riskClass, setState, shortHash, signed, state,
} from "./common.js";
import qrcode from "./vendor/qrcode.js";

const MINED_POLL_MS = 1000;
const MINED_DEADLINE_MS = 120000;
const DICOM_MAGIC_OFFSET = 128;
let current = null;  // {reply, patientRef} of the result on screen

// ------------------------------------------------------------------ form and files
async function isDicom(file) {
  if (!file || file.size < DICOM_MAGIC_OFFSET + 4) return false;
  const bytes = new Uint8Array(await file.slice(DICOM_MAGIC_OFFSET, DICOM_MAGIC_OFFSET + 4).arrayBuffer());
  return String.fromCharCode(...bytes) === "DICM";
}

function tagRows(tags) {
  const window = tags.WindowCenter !== undefined
    ? `centre ${[].concat(tags.WindowCenter)[0]}, width ${[].concat(tags.WindowWidth)[0]}` : undefined;
  return [
    ["Modality", tags.Modality], ["Body part", tags.BodyPartExamined],
    ["Series", [tags.SeriesNumber, tags.SeriesDescription].filter((v) => v !== undefined).join(" · ") || undefined],
    ["Slice thickness", tags.SliceThickness !== undefined ? `${tags.SliceThickness} mm` : undefined],
    ["Window", window], ["Size", tags.Rows ? `${tags.Columns} × ${tags.Rows} px` : undefined],
  ].filter(([, value]) => value !== undefined);
}

async function showFile(name) {
  const input = $(`${name}-input`);
  const file = input.files[0];
  $(`${name}-name`).textContent = file ? `${file.name} (${Math.ceil(file.size / 1024)} KiB)` : "no file chosen";
  $(`${name}-drop`).classList.toggle("has-file", Boolean(file));
  const tags = $(`${name}-tags`);
  tags.hidden = true;
  tags.replaceChildren();
  if (!file || !(await isDicom(file)) || !state.session) return;
  try {
    const reply = await api("/dicom/tags", { method: "POST", body: file, headers: { "Content-Type": "application/dicom" } });
    if (input.files[0] !== file) return;  // another file was chosen meanwhile
    kvList(tags, [["DICOM", "yes"], ...tagRows(reply.tags)]);
    tags.dataset.tags = JSON.stringify(reply.tags);
    tags.hidden = false;
  } catch (error) {
    kvList(tags, [["DICOM", describeFailure(error)]]);
    tags.hidden = false;
  }
}

function wireDrop(name) {
  const drop = $(`${name}-drop`);
  const input = $(`${name}-input`);
  input.addEventListener("change", () => showFile(name));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (!event.dataTransfer.files.length) return;
    const transfer = new DataTransfer();
    transfer.items.add(event.dataTransfer.files[0]);
    input.files = transfer.files;
    showFile(name);
  });
}

export function clearForm() {
  $("diagnose-form").reset();
  for (const name of ["xray", "ct"]) {
    $(`${name}-input`).value = "";
    $(`${name}-name`).textContent = "no file chosen";
    $(`${name}-drop`).classList.remove("has-file");
    $(`${name}-tags`).hidden = true;
    $(`${name}-tags`).replaceChildren();
    delete $(`${name}-tags`).dataset.tags;
  }
}

export function clearResult() {
  current = null;
  $("result").hidden = true;
  $("result-record").textContent = "";
  delete $("result-record").dataset.recordId;
  for (const id of ["result-patient", "result-operator", "result-finding", "result-risk", "reasoning-fused",
                    "reasoning-finding", "reasoning-risk", "result-block-height", "result-block-hash"]) $(id).textContent = "";
  for (const id of ["reasoning-models", "reasoning-factors", "result-modalities", "result-recommendations"]) $(id).replaceChildren();
}

export function newPatient() {
  clearResult();
  clearForm();
  setState($("diagnose-state"), "");
  $("xray-input").focus();
}

// ------------------------------------------------------------------------ viewer
function makeViewer(name, entry, baseSrc, tags) {
  const label = MODALITY_NAMES[name] || name;
  const view = { scale: 1, x: 0, y: 0 };
  const heat = el("img", { src: `data:image/png;base64,${entry.heatmap_png}`, alt: `${label} heatmap`, class: "heat", draggable: "false" });
  const stage = el("div", { class: "stage" });
  const base = baseSrc ? el("img", { src: baseSrc, alt: `${label} image`, class: "base", draggable: "false" }) : null;
  if (base) stage.append(base);
  stage.append(heat);
  const side = el("div", { class: "stage side", hidden: "" },
    el("img", { src: `data:image/png;base64,${entry.heatmap_png}`, alt: `${label} heatmap alone`, class: "heat-alone", draggable: "false" }));
  const frame = el("div", { class: "frame", tabindex: "0", role: "img",
    "aria-label": `${label} viewer: arrow keys pan, plus and minus zoom, 0 resets` }, stage, side);
  const apply = () => {
    const transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    stage.style.transform = transform;
    side.style.transform = transform;
    zoomText.textContent = `${Math.round(view.scale * 100)} %`;
  };
  const zoom = (factor) => { view.scale = Math.min(8, Math.max(1, view.scale * factor)); if (view.scale === 1) { view.x = 0; view.y = 0; } apply(); };
  const zoomText = el("span", { class: "small zoom-level", "aria-live": "polite" }, "100 %");
  frame.addEventListener("wheel", (event) => { event.preventDefault(); zoom(event.deltaY < 0 ? 1.25 : 0.8); }, { passive: false });
  let drag = null;
  frame.addEventListener("pointerdown", (event) => { drag = { x: event.clientX - view.x, y: event.clientY - view.y }; frame.setPointerCapture(event.pointerId); });
  frame.addEventListener("pointermove", (event) => { if (drag && view.scale > 1) { view.x = event.clientX - drag.x; view.y = event.clientY - drag.y; apply(); } });
  frame.addEventListener("pointerup", () => { drag = null; });
  frame.addEventListener("keydown", (event) => {
    const step = 20;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (moves[event.key] && view.scale > 1) { view.x += moves[event.key][0]; view.y += moves[event.key][1]; apply(); }
    else if (event.key === "+" || event.key === "=") zoom(1.25);
    else if (event.key === "-") zoom(0.8);
    else if (event.key === "0") { view.scale = 1; view.x = 0; view.y = 0; apply(); }
    else return;
    event.preventDefault();
  });
  const controls = el("div", { class: "viewer-controls" },
    el("button", { type: "button", class: "secondary small", "aria-label": `Zoom in on the ${label}`, onclick: () => zoom(1.25) }, "+"),
    el("button", { type: "button", class: "secondary small", "aria-label": `Zoom out of the ${label}`, onclick: () => zoom(0.8) }, "−"),
    el("button", { type: "button", class: "secondary small", onclick: () => { view.scale = 1; view.x = 0; view.y = 0; apply(); } }, "Reset"),
    zoomText);
  if (base) {
    heat.style.opacity = "0.5";
    const opacity = el("input", { type: "range", min: "0", max: "100", value: "50", "aria-label": `${label} heatmap opacity` });
    opacity.addEventListener("input", () => { heat.style.opacity = String(opacity.value / 100); });
    const contrast = el("input", { type: "range", min: "50", max: "200", value: "100", "aria-label": `${label} display contrast` });
    const brightness = el("input", { type: "range", min: "50", max: "200", value: "100", "aria-label": `${label} display brightness` });
    const filter = () => { base.style.filter = `contrast(${contrast.value}%) brightness(${brightness.value}%)`; };
    contrast.addEventListener("input", filter);
    brightness.addEventListener("input", filter);
    const mode = el("select", { "aria-label": `${label} layout` },
      el("option", { value: "blend" }, "Blended"), el("option", { value: "side" }, "Side by side"));
    mode.addEventListener("change", () => {
      const sideBySide = mode.value === "side";
      side.hidden = !sideBySide;
      heat.hidden = sideBySide;
      frame.classList.toggle("split", sideBySide);
    });
    controls.append(el("label", { class: "toggle" }, "Heatmap", opacity), el("label", { class: "toggle" }, "Layout", mode),
      el("label", { class: "toggle" }, "Contrast", contrast), el("label", { class: "toggle" }, "Brightness", brightness));
  }
  const above = entry.probability >= entry.threshold;
  const caption = el("figcaption", {},
    el("strong", {}, `${label}: ${percent(entry.probability)} (threshold ${percent(entry.threshold)})`),
    el("span", { class: "small" }, `${entry.model.name} ${entry.model.version} · ${entry.source_format.toUpperCase()} · ${above ? "at or above" : "below"} its threshold`),
    el("span", { class: "mono small", title: entry.model.sha256 }, `model ${shortHash(entry.model.sha256, 8)}`));
  if (!base) caption.append(el("span", { class: "small" }, "The node keeps no image, so a reopened PNG or JPEG shows its heatmap alone."));
  if (tags) {
    const list = el("dl", { class: "tags" });
    kvList(list, tagRows(tags));
    caption.append(list);
  }
  return el("figure", { class: "modality", "data-modality": name }, frame, controls, caption);
}

// --------------------------------------------------------------------- reasoning
function reasoningLines(result) {
  const imageAbove = result.fused_probability >= result.fused_threshold;
  const adjustment = result.risk_adjustment;
  return {
    fused: `${percent(result.fused_probability)} against the fused threshold ${percent(result.fused_threshold)} `
      + "(weighted mean of the models' log-odds; weights from each model's validated AUC).",
    finding: `${findingText(result.label)}: the image score is ${imageAbove ? "at or above" : "below"} the threshold; `
      + `confidence ${Number(result.confidence).toFixed(0)} % (50 % at the threshold, 100 % at the extreme).`,
    risk: `risk score ${percent(result.adjusted_probability)} (image score ${percent(result.fused_probability)} `
      + `shifted by ${signed(adjustment.total)}) → ${result.risk_level}`
      + (result.label === "affected" ? " (never below Moderate when the images show a finding)." : "."),
  };
}

function factorValue(name, value) {
  if (value === null || value === undefined) return "unknown";
  if (name === "family_history") return value ? "yes" : "no";
  return String(value);
}

function factorRows(result) {
  const adjustment = result.risk_adjustment;
  const rows = Object.keys(FACTOR_NAMES).map((name) => el("tr", { "data-factor": name },
    el("td", {}, FACTOR_NAMES[name]), el("td", {}, factorValue(name, (result.risk_factors || {})[name])), el("td", {}, signed(adjustment[name]))));
  const sum = adjustment.age + adjustment.smoking + adjustment.family_history;
  rows.push(el("tr", { class: "total" }, el("td", {}, "Total"),
    el("td", {}, Math.abs(sum - adjustment.total) > 1e-9 ? `sum ${signed(sum)}, capped` : ""), el("td", {}, signed(adjustment.total))));
  return rows;
}

function modelRows(result) {
  return Object.entries(result.modalities).map(([name, entry]) => el("tr", { "data-modality": name },
    el("td", {}, `${MODALITY_NAMES[name] || name} (${entry.model.name} ${entry.model.version})`),
    el("td", {}, percent(entry.probability)), el("td", {}, percent(entry.threshold)), el("td", {}, entry.weight.toFixed(2))));
}

// ------------------------------------------------------------------------ result
function renderResult(reply, files, patientRef, tags = {}) {
  const result = reply.result;
  current = { reply, patientRef };
  $("result").hidden = false;
  $("result-record").textContent = `record ${reply.record_id}`;
  $("result-record").dataset.recordId = reply.record_id;
  $("result-patient").textContent = patientRef ? `Patient reference ${patientRef} (kept only as a keyed hash)`
    : (reply.patient_pseudonym ? "A patient reference was given (kept only as a keyed hash)" : "No patient reference given");
  $("result-operator").textContent = `Run by ${reply.operator || "–"} at ${isoTime(reply.created_ms)}`;
  $("result-finding").textContent = findingText(result.label);
  $("result-finding").className = `metric-value finding-${result.label}`;
  $("result-risk").textContent = `${result.risk_level} risk`;
  $("result-risk").className = riskClass(result.risk_level);
  const lines = reasoningLines(result);
  $("reasoning-models").replaceChildren(...modelRows(result));
  $("reasoning-fused").textContent = lines.fused;
  $("reasoning-finding").textContent = lines.finding;
  $("reasoning-factors").replaceChildren(...factorRows(result));
  $("reasoning-risk").textContent = lines.risk;
  $("result-modalities").replaceChildren(...Object.entries(result.modalities).map(([name, entry]) => {
    let base = null;
    if (entry.image_png) base = `data:image/png;base64,${entry.image_png}`;  // DICOM: the windowed greyscale render
    else if (files[name] && /^image\/(png|jpeg)$/.test(files[name].type)) base = URL.createObjectURL(files[name]);
    return makeViewer(name, entry, base, tags[name]);
  }));
  $("result-recommendations").replaceChildren(...result.recommendations.map((text) => el("li", {}, text)));
  $("result-disclaimer").textContent = result.disclaimer;
  renderChainPosition(reply);
}

function renderChainPosition(position) {
  const mined = position.status === "mined";
  $("result-chain-state").textContent = mined
    ? `Recorded in block ${position.block_height} (${finalityText(position.confirmations, position.finality)})`
    : "Stored and queued; waiting for a block…";
  $("result-chain-state").className = `chain-state ${mined ? "mined" : ""}`;
  $("result-block-height").textContent = mined ? position.block_height : "–";
  $("result-block-hash").textContent = mined ? position.block_hash : "–";
  if (current && mined) Object.assign(current.reply, { status: "mined", block_height: position.block_height, block_hash: position.block_hash });
  return mined;
}

async function followRecord(recordId) {
  const deadline = Date.now() + MINED_DEADLINE_MS;
  while (Date.now() < deadline && $("result-record").dataset.recordId === recordId) {
    try {
      const position = await api(`/records/${recordId}`);
      if ($("result-record").dataset.recordId !== recordId) return;  // a new patient is on screen
      if (renderChainPosition(position)) return;
    } catch (error) {
      if (!(error instanceof ApiFailure && error.status === 404)) throw error;
    }
    await new Promise((resolve) => { window.setTimeout(resolve, MINED_POLL_MS); });
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
  const tags = {};
  for (const name of ["xray", "ct"]) if ($(`${name}-tags`).dataset.tags) tags[name] = JSON.parse($(`${name}-tags`).dataset.tags);
  clearResult();
  $("diagnose-button").disabled = true;
  setState($("diagnose-state"), "Analysing…");
  const started = performance.now();
  try {
    const reply = await api("/diagnoses", { method: "POST", body: form });
    renderResult(reply, files, patientRef, tags);
    clearForm();
    setState($("diagnose-state"), `Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${findingText(reply.result.label)}, `
      + `${reply.result.risk_level} risk. Record stored; the form is cleared for the next patient.`, "ok");
    $("result").focus();
    followRecord(reply.record_id).catch((error) => setState($("diagnose-state"), describeFailure(error), "error"));
  } catch (error) {
    clearResult();
    clearForm();
    setState($("diagnose-state"), `${describeFailure(error)} Nothing was recorded; the form was cleared so that no `
      + "details carry over to another patient.", "error");
  } finally {
    $("diagnose-button").disabled = !(state.status && state.status.diagnostics);
  }
}

// Reopen a stored diagnosis (from the worklist or a deep link).
export async function openDiagnosis(recordId) {
  clearResult();
  clearForm();
  setState($("diagnose-state"), "Opening the stored diagnosis…");
  try {
    const reply = await api(`/diagnoses/${recordId}`);
    renderResult(reply, {}, "");
    setState($("diagnose-state"), `Stored diagnosis ${shortHash(recordId, 8)} reopened.`, "ok");
    $("result").focus();
    if (reply.status !== "mined") followRecord(recordId).catch(() => {});
    return reply;
  } catch (error) {
    setState($("diagnose-state"), describeFailure(error), "error");
    return null;
  }
}

// -------------------------------------------------------------------- report
// The verify link as a QR code, drawn as SVG through the DOM (qrcode-generator, MIT, vendored).
function qrSvg(text, label) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const count = qr.getModuleCount();
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [key, value] of Object.entries({ viewBox: `-4 -4 ${count + 8} ${count + 8}`, width: "148", height: "148",
    role: "img", "aria-label": label, "shape-rendering": "crispEdges" })) svg.setAttribute(key, value);
  const background = document.createElementNS(ns, "rect");
  for (const [key, value] of Object.entries({ x: "-4", y: "-4", width: String(count + 8), height: String(count + 8), fill: "#fff" })) background.setAttribute(key, value);
  let path = "";
  for (let row = 0; row < count; row += 1) {
    for (let column = 0; column < count; column += 1) if (qr.isDark(row, column)) path += `M${column},${row}h1v1h-1z`;
  }
  const modules = document.createElementNS(ns, "path");
  modules.setAttribute("d", path);
  modules.setAttribute("fill", "#000");
  svg.append(background, modules);
  return svg;
}

export async function renderReport(recordId) {
  let reply = current && current.reply.record_id === recordId ? current.reply : null;
  if (!reply) reply = await api(`/diagnoses/${recordId}`);
  if (reply.status !== "mined") {
    try { Object.assign(reply, await api(`/records/${recordId}`)); } catch { /* still pending */ }
  }
  const result = reply.result;
  const lines = reasoningLines(result);
  const verifyUrl = `${location.origin}/#/record/${recordId}`;
  kvList($("report-fields"), [
    ["Image finding", findingText(result.label)], ["Confidence of the finding", `${Number(result.confidence).toFixed(0)} %`],
    ["Risk level", `${result.risk_level} (risk score ${percent(result.adjusted_probability)})`],
    ["Record", recordId, { mono: true }], ["Run by", reply.operator || "–"], ["Run at", isoTime(reply.created_ms)],
    ["Hospital", state.status ? state.status.name : "–"],
    ["Patient reference", reply.patient_pseudonym ? "given; kept only as a keyed hash" : "none given"]]);
  const modelsTable = el("table", { class: "compact" }, el("thead", {}, el("tr", {},
    el("th", { scope: "col" }, "Model"), el("th", { scope: "col" }, "Probability"), el("th", { scope: "col" }, "Threshold"), el("th", { scope: "col" }, "Weight"))),
    el("tbody", {}, ...modelRows(result)));
  const factorsTable = el("table", { class: "compact" }, el("thead", {}, el("tr", {},
    el("th", { scope: "col" }, "Factor"), el("th", { scope: "col" }, "Value"), el("th", { scope: "col" }, "Contribution"))),
    el("tbody", {}, ...factorRows(result)));
  $("report-reasoning").replaceChildren(
    el("li", {}, el("strong", {}, "Each model on its image"), modelsTable),
    el("li", {}, el("strong", {}, "Fused image score "), lines.fused),
    el("li", {}, el("strong", {}, "Image finding "), lines.finding),
    el("li", {}, el("strong", {}, "Risk factors (never change the finding)"), factorsTable),
    el("li", {}, el("strong", {}, "Risk score and level "), lines.risk));
  $("report-recommendations").replaceChildren(...result.recommendations.map((text) => el("li", {}, text)));
  $("report-models").replaceChildren(...Object.entries(result.modalities).map(([name, entry]) => el("li", {},
    `${MODALITY_NAMES[name] || name}: ${entry.model.name} ${entry.model.version}, sha256 `, el("span", { class: "mono" }, entry.model.sha256),
    " (model card: models/", name, "/card.json and docs/MODELS.md in the node's repository)")));
  kvList($("report-chain"), [
    ["Status", reply.status === "mined" ? "mined" : "waiting for a block"],
    ["Block", reply.block_height ?? "–"], ["Block hash", reply.block_hash, { mono: true }],
    ["Verify at", el("a", { href: `#/record/${recordId}` }, verifyUrl)]]);
  $("report-qr").replaceChildren(qrSvg(verifyUrl, `QR code of the verify link ${verifyUrl}`));
  $("report-qr").dataset.url = verifyUrl;
  $("report-generated").textContent = `Generated ${isoTime(Date.now())}. ${result.disclaimer}.`;
}

export function currentRecordId() {
  return current ? current.reply.record_id : null;
}

export function initDiagnose(openInExplorer, openReport) {
  wireDrop("xray");
  wireDrop("ct");
  $("diagnose-form").addEventListener("submit", submitDiagnosis);
  $("new-patient").addEventListener("click", newPatient);
  $("new-patient-result").addEventListener("click", newPatient);
  $("result-open-record").addEventListener("click", () => openInExplorer($("result-record").dataset.recordId));
  $("result-report").addEventListener("click", () => openReport($("result-record").dataset.recordId));
}
