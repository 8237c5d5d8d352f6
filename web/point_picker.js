// Point picker for Perceive Task (DICEPTION point segmentation).
// Shows the image connected to the node's `image` input (e.g. a LoadImage preview) inside the node;
// click to add a point (at most 5), drag a point to move it, shift-click (or ctrl-click) a point to delete it.
// Points are stored in the node's `points` widget as KJNodes Points Editor JSON, in pixels of the image:
// [{"x": 120, "y": 80}, ...]; they are saved with the workflow like any widget value.
import { app } from "../../scripts/app.js";

const NODE = "DiceptionPerceiveTask";
const MAX_POINTS = 5;
const HEIGHT = 220;
const RADIUS = 6;

function parsePoints(text) {
  try {
    const value = JSON.parse(text || "[]");
    return Array.isArray(value) ? value.filter((p) => p && Number.isFinite(p.x) && Number.isFinite(p.y)) : [];
  } catch {
    return [];
  }
}

function sourceImage(node) {
  const slot = node.inputs?.findIndex((input) => input.name === "image");
  const linkId = slot >= 0 ? node.inputs[slot].link : null;
  const link = linkId != null ? node.graph?.links?.[linkId] ?? node.graph?.links?.get?.(linkId) : null;
  const source = link ? node.graph.getNodeById(link.origin_id) : null;
  const img = source?.imgs?.[0];
  return img && img.naturalWidth ? img : null;
}

// Where the image is drawn inside the widget: fitted into (width × HEIGHT), centred.
function layout(img, width, top) {
  const scale = Math.min((width - 20) / img.naturalWidth, (HEIGHT - 10) / img.naturalHeight);
  const w = img.naturalWidth * scale;
  const h = img.naturalHeight * scale;
  return { x: (width - w) / 2, y: top + 5, w, h, scale };
}

function pointsWidget(node) {
  return node.widgets?.find((w) => w.name === "points");
}

function setPoints(node, points) {
  const widget = pointsWidget(node);
  if (!widget) return;
  widget.value = JSON.stringify(points.map((p) => ({ x: Math.round(p.x), y: Math.round(p.y) })));
  widget.callback?.(widget.value);
  node.setDirtyCanvas(true, true);
}

function makePicker(node) {
  const picker = {
    name: "point_picker",
    type: "diception_point_picker",
    value: "",
    options: { serialize: false },
    dragging: -1,
    top: 0,
    computeSize(width) {
      return [width, HEIGHT];
    },
    draw(ctx, node, width, y) {
      this.top = y;
      ctx.save();
      ctx.fillStyle = "#111";
      ctx.fillRect(10, y, width - 20, HEIGHT);
      const img = sourceImage(node);
      if (!img) {
        ctx.fillStyle = "#999";
        ctx.font = "12px sans-serif";
        ctx.textAlign = "center";
        ctx.fillText("connect an image (e.g. Load Image) to pick points", width / 2, y + HEIGHT / 2);
        ctx.restore();
        return;
      }
      const box = layout(img, width, y);
      ctx.drawImage(img, box.x, box.y, box.w, box.h);
      parsePoints(pointsWidget(node)?.value).forEach((p, i) => {
        const cx = box.x + p.x * box.scale;
        const cy = box.y + p.y * box.scale;
        ctx.beginPath();
        ctx.arc(cx, cy, RADIUS, 0, 2 * Math.PI);
        ctx.fillStyle = "rgba(255, 60, 60, 0.85)";
        ctx.fill();
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 2;
        ctx.stroke();
        ctx.fillStyle = "#fff";
        ctx.font = "10px sans-serif";
        ctx.textAlign = "center";
        ctx.fillText(String(i + 1), cx, cy - RADIUS - 3);
      });
      ctx.restore();
    },
    mouse(event, pos, node) {
      const img = sourceImage(node);
      if (!img) return false;
      const box = layout(img, node.size[0], this.top);
      const points = parsePoints(pointsWidget(node)?.value);
      const type = event.type;
      const hit = points.findIndex(
        (p) => Math.hypot(box.x + p.x * box.scale - pos[0], box.y + p.y * box.scale - pos[1]) <= RADIUS + 2,
      );
      const toImage = () => ({
        x: Math.min(img.naturalWidth - 1, Math.max(0, (pos[0] - box.x) / box.scale)),
        y: Math.min(img.naturalHeight - 1, Math.max(0, (pos[1] - box.y) / box.scale)),
      });
      const inside = pos[0] >= box.x && pos[0] <= box.x + box.w && pos[1] >= box.y && pos[1] <= box.y + box.h;
      if (type === "pointerdown" || type === "mousedown") {
        if (hit >= 0 && (event.shiftKey || event.ctrlKey || event.button === 2)) {
          points.splice(hit, 1);
          setPoints(node, points);
        } else if (hit >= 0) {
          this.dragging = hit;
        } else if (inside && points.length < MAX_POINTS) {
          points.push(toImage());
          setPoints(node, points);
        }
        return true;
      }
      if ((type === "pointermove" || type === "mousemove") && this.dragging >= 0) {
        if (points[this.dragging]) {
          points[this.dragging] = toImage();
          setPoints(node, points);
        }
        return true;
      }
      if (type === "pointerup" || type === "mouseup") {
        this.dragging = -1;
        return true;
      }
      return false;
    },
  };
  return picker;
}

app.registerExtension({
  name: "diception.pointPicker",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.addCustomWidget(makePicker(this));
      this.addWidget("button", "clear points", null, () => setPoints(this, []), { serialize: false });
      this.setSize([Math.max(this.size[0], 320), this.computeSize()[1]]);
      return result;
    };
    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function () {
      const result = onConnectionsChange?.apply(this, arguments);
      this.setDirtyCanvas(true, true);
      return result;
    };
  },
});
