// Words that find the pack's nodes in the node search box besides their names: "lora", "adapter", "train",
// "fine-tune", "new task" find the adapter nodes. The search of the current frontend matches each node's name,
// display name and `search_aliases`; ComfyUI v0.8.0's server sends no aliases for classic nodes, so they are
// added to the node definitions here, before the frontend indexes them (aliases a server sends are kept).
import { app } from "../../scripts/app.js";

const ADAPTER = ["lora", "adapter", "new task", "few-shot", "custom task"];
export const SEARCH_ALIASES = {
  DiceptionTrainAdapter: [...ADAPTER, "train", "training", "fine-tune", "finetune", "teach a new task", "learn"],
  DiceptionLoadAdapter: [...ADAPTER, "load lora", "lora loader"],
  DiceptionSaveAdapter: [...ADAPTER, "save lora"],
  DiceptionLoadExamples: ["train", "training", "examples", "dataset", "image pairs", "new task", "few-shot"],
  DiceptionPerceiveTask: ["depth", "depth estimation", "normals", "normal map", "segmentation", "pose", "perception"],
  DiceptionLoad: ["sd3", "stable diffusion 3", "perception model"],
  PersamSamLoader: ["sam", "segment anything", "sam loader"],
  PersamReference: ["personalize", "one shot", "reference mask", "segment anything"],
  PersamSegment: ["personalized segmentation", "segment anything", "mask", "video"],
  PersamDreamBoothMask: ["dreambooth", "training mask", "lora training", "subject mask"],
  PersamSaveDreamBoothDataset: ["dreambooth", "dataset", "kohya", "onetrainer", "simpletuner", "lora training"],
};

function addAliases(defs) {
  for (const def of Array.isArray(defs) ? defs : Object.values(defs ?? {})) {
    const aliases = SEARCH_ALIASES[def?.name];
    if (aliases) def.search_aliases = [...new Set([...(def.search_aliases ?? []), ...aliases])];
  }
}

app.registerExtension({
  name: "diception.searchAliases",
  addCustomNodeDefs: addAliases, // the definitions as the server sent them, before the frontend indexes them
  beforeRegisterVueAppNodeDefs: addAliases, // the list the node library and search are built from
});
