// Point picker for Perceive Task (DICEPTION point segmentation).
// A DOM widget (shown on the classic LiteGraph canvas, in Nodes 2.0 and on the legacy 2024 page) that
// shows the image connected to the node's `image` input; click to add a point (at most 5), drag a point to
// move it, shift-click, ctrl-click (cmd-click) or right-click a point to delete it, "clear points" to start
// over. It is active only when the task that runs is "point segmentation" (`task`, unless `task_name` names an
// adapter's task); for other tasks the points are kept (greyed out) and the node ignores them; when `points` is linked (e.g. from PerSAM Segment) the run uses the linked
// points and the picker takes no clicks. Points are stored in the node's `points` widget as KJNodes Points
// Editor JSON, in pixels of the image: [{"x": 120, "y": 80}, ...]. The picker itself is never saved.
// The image is the one Load Image (or any node showing a picture) feeds in, through Reroute nodes too; after a
// node that makes or changes the image (ImageScale, a crop, ...) only a run tells what it is, and points are in
// pixels of what this node receives: the picker then shows what a Preview Image (or Save Image) on the same
// output showed after the last run, and says so until there is one.
// Each edit (click, drag, delete, clear) is one undo step of the graph editor.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { taskThatRuns } from "./adapter_task.js";

const NODE = "DiceptionPerceiveTask";
const POINT_TASK = "point segmentation";
const PICKER = "point_picker";
let MAX_POINTS; // the node's points input declares it (max_points, from models/points.py via /object_info)
const HEIGHT = 250;
const BAR = 26;
const PAD = 4;
const RADIUS = 6;

function parsePoints(text) {
  try {
    const value = JSON.parse(text || "[]");
    return Array.isArray(value) ? value.filter((p) => p && Number.isFinite(p.x) && Number.isFinite(p.y)) : [];
  } catch {
    return [];
  }
}

function widgetOf(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// The node feeding `image` and its output slot (getInputNode / getInputLink: accessors both the current and the
// legacy LiteGraph offer), through the frontend's Reroute nodes (links' own reroute points need no walking: the
// link starts at the real node).
function sourceOf(node) {
  let slot = node.findInputSlot?.("image") ?? -1;
  let target = node;
  for (let hops = 0; slot >= 0 && target.graph && hops < 64; hops++) {
    const link = target.getInputLink(slot);
    const source = link ? target.getInputNode(slot) : null;
    if (!source) return null;
    if (source.type !== "Reroute") return { node: source, slot: link.origin_slot };
    target = source;
    slot = 0;
  }
  return null;
}

// The node feeding `points` when that input is linked (the widget's value is then not what the run uses).
function pointsLink(node) {
  const slot = node.inputs?.findIndex((i) => i.name === "points" || i.widget?.name === "points") ?? -1;
  return slot >= 0 && node.graph && node.isInputConnected(slot) ? node.getInputNode(slot) : null;
}

// Load Image, or a node that shows a picture (Load Image variants): the image it shows is the one it sends. Any other
// node (ImageScale, a crop, a model) changes or makes the image: only a run tells what it is.
function showsItsImage(source) {
  return !!widgetOf(source, "image") || !!source.imgs?.length;
}

// After a run, the picture a Preview Image / Save Image beside this node shows of the same output: exactly the image
// this node received.
const PREVIEWS = ["PreviewImage", "SaveImage"];
function previewOfOutput({ node, slot }) {
  const seen = new Set();
  const queue = [...(node.getOutputNodes?.(slot) ?? [])];
  while (queue.length && seen.size < 256) {
    const viewer = queue.shift();
    if (!viewer || seen.has(viewer)) continue;
    seen.add(viewer);
    if (viewer.type === "Reroute") queue.push(...(viewer.getOutputNodes?.(0) ?? []));
    else if (PREVIEWS.includes(viewer.type)) {
      const url = imageURL(viewer);
      if (url) return url;
    }
  }
  return null;
}

function viewURL(filename, type, subfolder) {
  const query = new URLSearchParams({ filename, type, subfolder: subfolder ?? "" });
  return api.apiURL(`/view?${query}`);
}

// URL of the image the source node shows: its preview, its last output, or (Load Image) the chosen file.
function imageURL(source) {
  if (!source) return null;
  const shown = source.imgs?.[0]?.src;
  if (shown) return shown;
  const output = app.nodeOutputs?.[source.id]?.images?.[0];
  if (output?.filename) return viewURL(output.filename, output.type ?? "output", output.subfolder);
  const chosen = widgetOf(source, "image")?.value;
  if (typeof chosen !== "string" || !chosen) return null;
  const [, path, type] = chosen.match(/^(.*?)(?: \[(input|output|temp)\])?$/);
  const cut = path.lastIndexOf("/");
  return viewURL(path.slice(cut + 1), type ?? "input", cut >= 0 ? path.slice(0, cut) : "");
}

const images = new Map();
function loadImage(url, onLoad) {
  let img = images.get(url);
  if (!img) {
    img = new Image();
    img.src = url;
    images.set(url, img);
  }
  if (!img.complete) img.addEventListener("load", onLoad, { once: true });
  return img.complete && img.naturalWidth ? img : null;
}

function makeElement() {
  const root = document.createElement("div");
  root.className = "diception-point-picker";
  Object.assign(root.style, { display: "flex", flexDirection: "column", width: "100%", height: "100%",
    minHeight: `${HEIGHT - 20}px`, boxSizing: "border-box", gap: "2px" });
  // The canvas, and over it the hint shown while there is no image: text that wraps within the picker's width.
  const view = document.createElement("div");
  // Its height also where the page lays the picker out as a block (the legacy page drops the flex display).
  Object.assign(view.style, { position: "relative", flex: "1 1 auto", minHeight: "0", width: "100%",
    height: `calc(100% - ${BAR}px)` });
  const canvas = document.createElement("canvas");
  Object.assign(canvas.style, { position: "absolute", inset: "0", width: "100%", height: "100%", background: "#111",
    borderRadius: "4px", cursor: "crosshair", touchAction: "none" });
  const hint = document.createElement("div");
  hint.className = "diception-point-picker-hint";
  Object.assign(hint.style, { position: "absolute", inset: "0", display: "flex", alignItems: "center",
    justifyContent: "center", padding: "8px 12px", boxSizing: "border-box", textAlign: "center",
    font: "12px sans-serif", color: "#999", whiteSpace: "normal", overflowWrap: "anywhere", pointerEvents: "none" });
  view.append(canvas, hint);
  const bar = document.createElement("div");
  Object.assign(bar.style, { display: "flex", alignItems: "center", gap: "6px", minHeight: `${BAR - 4}px`,
    flex: "0 0 auto", font: "11px sans-serif", color: "#aaa" });
  const clear = document.createElement("button");
  clear.textContent = "clear points";
  Object.assign(clear.style, { font: "11px sans-serif", padding: "1px 6px", cursor: "pointer", whiteSpace: "nowrap", flex: "0 0 auto" });
  const status = document.createElement("span");
  status.className = "diception-point-picker-status";
  Object.assign(status.style, { whiteSpace: "normal", overflowWrap: "anywhere", lineHeight: "1.2", minWidth: "0" });
  bar.append(clear, status);
  root.append(view, bar);
  return { root, canvas, hint, clear, status };
}

// The graph editor's undo history. Current frontend: LiteGraph's before/after-change events, which its change
// tracker turns into one undo step (captureCanvasState); the 2024 page has neither and records the edit with the
// next canvas action.
function recordUndoStep() {
  const canvas = app.canvas;
  if (typeof canvas?.emitBeforeChange === "function" && typeof canvas.emitAfterChange === "function") {
    canvas.emitBeforeChange();
    canvas.emitAfterChange();
  }
}

// Nodes 2.0 mounts a DOM widget's element once per node id: undo and redo load the graph again (new node objects,
// new pickers) but its node component keeps the old element, which belongs to a removed node. A picker whose
// element is off the page takes the place of its stale predecessor for the same node id.
const pickers = new WeakMap();
function isLive(node) {
  return !!node.graph && node.graph.getNodeById?.(node.id) === node;
}
function reattach(picker) {
  const { root } = picker.el;
  if (root.isConnected || !isLive(picker.node)) return;
  for (const element of document.querySelectorAll(".diception-point-picker")) {
    const stale = pickers.get(element);
    if (stale && stale !== picker && stale.node.id === picker.node.id && !isLive(stale.node)) {
      element.replaceWith(root);
      picker.refresh(true);
      return;
    }
  }
}

class PointPicker {
  constructor(node) {
    this.node = node;
    this.el = makeElement();
    pickers.set(this.el.root, this);
    this.dragging = -1;
    this.key = "";
    this.el.canvas.addEventListener("pointerdown", (e) => this.down(e));
    this.el.canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel"]) this.el.canvas.addEventListener(type, (e) => this.up(e));
    this.el.canvas.addEventListener("lostpointercapture", (e) => this.up(e));
    this.el.canvas.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); });
    this.el.clear.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.el.clear.addEventListener("click", (e) => { e.stopPropagation(); if (this.enabled()) this.setPoints([]); });
  }

  points() { return parsePoints(widgetOf(this.node, "points")?.value); }
  taskUsesPoints() { return taskThatRuns(this.node).task === POINT_TASK; }
  enabled() { return this.taskUsesPoints() && !pointsLink(this.node); }

  // The picture the node's `image` input gets, or null (then `why` says what is missing).
  image() {
    const source = sourceOf(this.node);
    if (!source) {
      this.why = "connect an image (e.g. Load Image) to pick points";
      return null;
    }
    const name = source.node.title || source.node.type;
    const shown = showsItsImage(source.node);
    const url = shown ? imageURL(source.node) : previewOfOutput(source);
    this.why = url ? "loading the image…"
      : shown ? `choose an image in ${name}`
        : `${name} makes this image when the graph runs: connect a Preview Image to its output and run once`;
    return url ? loadImage(url, () => this.refresh(true)) : null;
  }

  // `record`: make this edit one undo step (a drag records once, when it ends).
  setPoints(points, record = true) {
    const widget = widgetOf(this.node, "points");
    if (!widget) return;
    widget.value = JSON.stringify(points.map((p) => ({ x: Math.round(p.x), y: Math.round(p.y) })));
    widget.callback?.(widget.value);
    this.node.setDirtyCanvas?.(true, true);
    this.refresh(true);
    if (record) recordUndoStep();
  }

  // Where the image is drawn, in the canvas element's own (untransformed) pixels.
  box(img) {
    const w = this.el.canvas.clientWidth || 300, h = this.el.canvas.clientHeight || HEIGHT - BAR;
    const scale = Math.min((w - 2 * PAD) / img.naturalWidth, (h - 2 * PAD) / img.naturalHeight);
    const bw = img.naturalWidth * scale, bh = img.naturalHeight * scale;
    return { x: (w - bw) / 2, y: (h - bh) / 2, w: bw, h: bh, scale };
  }

  // Image pixel ↔ browser (client) coordinates, whatever zoom or CSS transform the frontend applies.
  zoom() {
    const rect = this.el.canvas.getBoundingClientRect();
    return { rect, sx: rect.width / (this.el.canvas.clientWidth || 1), sy: rect.height / (this.el.canvas.clientHeight || 1) };
  }
  imageToClient(px, py) {
    const img = this.image();
    if (!img) return null;
    const b = this.box(img), { rect, sx, sy } = this.zoom();
    return [rect.left + (b.x + px * b.scale) * sx, rect.top + (b.y + py * b.scale) * sy];
  }
  clientToImage(img, event) {
    const b = this.box(img), { rect, sx, sy } = this.zoom();
    const x = ((event.clientX - rect.left) / sx - b.x) / b.scale, y = ((event.clientY - rect.top) / sy - b.y) / b.scale;
    return { x, y, inside: x >= 0 && y >= 0 && x <= img.naturalWidth && y <= img.naturalHeight, radius: (RADIUS + 2) / b.scale,
      clamped: { x: Math.min(img.naturalWidth - 1, Math.max(0, x)), y: Math.min(img.naturalHeight - 1, Math.max(0, y)) } };
  }

  down(event) {
    event.stopPropagation();
    event.preventDefault();
    const img = this.image();
    if (!img || !this.enabled()) return;
    const at = this.clientToImage(img, event);
    const points = this.points();
    const hit = points.findIndex((p) => Math.hypot(p.x - at.x, p.y - at.y) <= at.radius);
    if (hit >= 0 && (event.shiftKey || event.ctrlKey || event.metaKey || event.button === 2)) {
      points.splice(hit, 1);
      this.setPoints(points);
    } else if (hit >= 0 && event.button === 0) {
      this.dragging = hit;
      this.el.canvas.setPointerCapture?.(event.pointerId);
    } else if (at.inside && event.button === 0 && points.length < MAX_POINTS) {
      points.push(at.clamped);
      this.setPoints(points);
    }
  }

  move(event) {
    if (this.dragging < 0) return;
    event.stopPropagation();
    const img = this.image();
    const points = this.points();
    if (!img || !points[this.dragging]) return;
    points[this.dragging] = this.clientToImage(img, event).clamped;
    this.setPoints(points, false);
    this.moved = true;
  }

  up(event) {
    if (this.dragging < 0) return;
    event.stopPropagation();
    this.dragging = -1;
    if (this.el.canvas.hasPointerCapture?.(event.pointerId)) this.el.canvas.releasePointerCapture(event.pointerId);
    if (this.moved) recordUndoStep();
    this.moved = false;
  }

  // Redraw when anything shown changed (cheap to call often: the legacy canvas calls it every frame).
  refresh(force = false) {
    reattach(this);
    const { canvas } = this.el;
    const img = this.image();
    const enabled = this.enabled();
    const linked = pointsLink(this.node);
    const runs = taskThatRuns(this.node);
    const key = [img?.src, this.why, widgetOf(this.node, "points")?.value, enabled, linked?.id, runs.task, canvas.clientWidth, canvas.clientHeight].join("|");
    if (!force && key === this.key) return;
    this.key = key;
    const points = this.points();
    this.el.clear.disabled = !enabled || points.length === 0;
    this.el.root.dataset.enabled = String(enabled);
    this.el.status.textContent = linked
      ? `points come from ${linked.title || linked.type} (linked): the run uses those, not these`
      : enabled
        ? `${points.length}/${MAX_POINTS} points · drag: move · shift/ctrl-click: delete`
        : runs.adapter
          ? `task_name "${runs.name}" runs: points are used by the "${POINT_TASK}" task only (kept, ignored)`
          : `points are used by the "${POINT_TASK}" task only (kept, ignored by this task)`;
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300, h = canvas.clientHeight || HEIGHT - BAR;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "12px sans-serif";
    ctx.textAlign = "center";
    this.el.hint.textContent = img ? "" : this.why;
    this.el.hint.style.display = img ? "none" : "flex";
    if (!img) return;
    const b = this.box(img);
    ctx.globalAlpha = enabled ? 1 : 0.35;
    ctx.drawImage(img, b.x, b.y, b.w, b.h);
    points.forEach((p, i) => {
      const cx = b.x + p.x * b.scale, cy = b.y + p.y * b.scale;
      ctx.beginPath();
      ctx.arc(cx, cy, RADIUS, 0, 2 * Math.PI);
      ctx.fillStyle = enabled ? "rgba(255, 60, 60, 0.9)" : "rgba(160, 160, 160, 0.9)";
      ctx.fill();
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2;
      ctx.stroke();
      ctx.fillStyle = "#fff";
      ctx.font = "10px sans-serif";
      ctx.fillText(String(i + 1), cx, cy - RADIUS - 3);
    });
    ctx.globalAlpha = 1;
  }
}

app.registerExtension({
  name: "diception.pointPicker",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;
    MAX_POINTS = nodeData.input.required.points[1].max_points;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const picker = new PointPicker(this);
      const widget = this.addDOMWidget(PICKER, "diception_point_picker", picker.el.root, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => HEIGHT,
        getHeight: () => HEIGHT,
        onDraw: () => picker.refresh(),
      });
      widget.serialize = false; // current frontend: not in the saved workflow's widgets_values
      widget.picker = picker;
      this.diceptionPicker = picker;
      const timer = setInterval(() => picker.refresh(), 300); // Nodes 2.0 does not draw widgets on the canvas
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        clearInterval(timer);
        return onRemoved?.apply(this, arguments);
      };
      this.setSize([Math.max(this.size[0], 320), Math.max(this.size[1], this.computeSize()[1])]);
      return result;
    };
    // The legacy page saves every widget's value; keep only the node's own inputs.
    const onSerialize = nodeType.prototype.onSerialize;
    nodeType.prototype.onSerialize = function (data) {
      const result = onSerialize?.apply(this, arguments);
      if (Array.isArray(data.widgets_values) && data.widgets_values.length === this.widgets?.length) {
        data.widgets_values = data.widgets_values.filter((_, i) => this.widgets[i].name !== PICKER);
      }
      return result;
    };
    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function () {
      const result = onConnectionsChange?.apply(this, arguments);
      try {
        this.diceptionPicker?.refresh(true);
      } catch (error) {
        console.error("point picker:", error); // never let the picker break loading a graph
      }
      return result;
    };
  },
});
