// The pack's templates open readable. The template browser fits a template to the window, and a wide template can
// come out below the zoom at which the classic canvas stops drawing text (about 0.6: LiteGraph's low-quality
// threshold). After one of the pack's templates opens, a view below that zoom is raised to it, keeping the
// template's top-left corner where the fit put it: the start of the graph is readable and the rest a pan away.
import { app } from "../../scripts/app.js";

const PACK_NODES = /^(Diception|Persam)/;
const READABLE = 0.6;

function readableZoom(canvas) {
  return Math.max(READABLE, canvas._lowQualityZoomThreshold ?? 0);
}

function raiseToReadable() {
  const canvas = app.canvas, ds = canvas?.ds;
  const nodes = app.graph?.nodes ?? [];
  if (!ds || !nodes.some((n) => PACK_NODES.test(n.type ?? ""))) return;
  const zoom = readableZoom(canvas);
  if (!(ds.scale < zoom)) return;
  const left = Math.min(...nodes.map((n) => n.boundingRect?.[0] ?? n.pos[0]));
  const top = Math.min(...nodes.map((n) => n.boundingRect?.[1] ?? n.pos[1]));
  const screen = [(left + ds.offset[0]) * ds.scale, (top + ds.offset[1]) * ds.scale];
  ds.scale = zoom;
  ds.offset[0] = screen[0] / zoom - left;
  ds.offset[1] = screen[1] / zoom - top;
  canvas.setDirty(true, true);
}

app.registerExtension({
  name: "diception.templateView",
  setup() {
    const loadGraphData = app.loadGraphData;
    if (typeof loadGraphData !== "function") return;
    app.loadGraphData = async function (graph, clean, restoreView, workflow, options) {
      const result = await loadGraphData.apply(this, arguments);
      if (options?.openSource === "template") {
        raiseToReadable();
        requestAnimationFrame(raiseToReadable); // after the frontend's own fit, wherever it runs it
      }
      return result;
    };
  },
});
