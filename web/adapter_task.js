// Perceive Task shows which task runs. Its `task_name` input names a task taught with Train / Load DICEPTION Adapter;
// when it is set, that task runs and the `task` choice is not used (the node: task = task_name or task). The `task`
// widget then shows it: greyed out (disabled) and relabelled with the task that runs, on the classic canvas, in
// Nodes 2.0 and on the legacy page. Clearing `task_name` gives `task` back.
import { app } from "../../scripts/app.js";

const NODE = "DiceptionPerceiveTask";
const SHOWN = 18; // characters of the task name shown in the label

function widgetOf(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// The task Perceive Task runs: `task_name` when set, else `task` (as PerceiveTask.perceive decides).
export function taskThatRuns(node) {
  const name = String(widgetOf(node, "task_name")?.value ?? "").trim();
  return { name, task: name || widgetOf(node, "task")?.value, adapter: !!name };
}

function showTaskThatRuns(node) {
  const task = widgetOf(node, "task");
  if (!task) return;
  const { name, adapter } = taskThatRuns(node);
  const shown = name.length > SHOWN ? `${name.slice(0, SHOWN - 1)}…` : name;
  const label = adapter ? `task unused: "${shown}" runs` : undefined;
  if (task.label === label && !!task.disabled === adapter) return;
  task.label = label;
  task.disabled = adapter;
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "diception.adapterTask",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const name = widgetOf(this, "task_name");
      if (name) {
        const callback = name.callback;
        name.callback = (...args) => {
          const value = callback?.apply(name, args);
          showTaskThatRuns(this);
          return value;
        };
      }
      // Values set without the widget's callback (a loaded workflow, undo, a script): checked a few times a second,
      // as Nodes 2.0 draws no widgets on the canvas.
      const timer = setInterval(() => showTaskThatRuns(this), 300);
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        clearInterval(timer);
        return onRemoved?.apply(this, arguments);
      };
      showTaskThatRuns(this);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      showTaskThatRuns(this);
      return result;
    };
  },
});
