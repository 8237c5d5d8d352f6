// Save DICEPTION Adapter shows where it wrote. The node reports the file it wrote (relative to the output folder)
// in its UI output, {"text": [path]}; the graph editor shows a node's text output only for its own text nodes, so
// this extension shows it in a line under the node's widgets (classic canvas, Nodes 2.0, legacy page). The line is
// not saved with the workflow.
import { app } from "../../scripts/app.js";

const NODE = "DiceptionSaveAdapter";
const LINE = "saved_path";

app.registerExtension({
  name: "diception.savedPath",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const line = document.createElement("div");
      line.className = "diception-saved-path";
      Object.assign(line.style, { font: "11px sans-serif", color: "#aaa", whiteSpace: "normal",
        overflowWrap: "anywhere", padding: "2px 4px", boxSizing: "border-box", width: "100%" });
      line.textContent = "not saved yet: runs write output/loras/diception/NAME_00001.safetensors";
      const widget = this.addDOMWidget(LINE, "diception_saved_path", line, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => 36,
        getHeight: () => 36,
      });
      widget.serialize = false;
      this.diceptionSavedPath = line;
      this.setSize([Math.max(this.size[0], 300), Math.max(this.size[1], this.computeSize()[1])]);
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      const path = output?.text?.[0];
      if (path && this.diceptionSavedPath) this.diceptionSavedPath.textContent = `saved: output/${path}`;
      return result;
    };
    // The legacy page saves every widget's value; keep only the node's own inputs.
    const onSerialize = nodeType.prototype.onSerialize;
    nodeType.prototype.onSerialize = function (data) {
      const result = onSerialize?.apply(this, arguments);
      if (Array.isArray(data.widgets_values) && data.widgets_values.length === this.widgets?.length) {
        data.widgets_values = data.widgets_values.filter((_, i) => this.widgets[i].name !== LINE);
      }
      return result;
    };
  },
});
