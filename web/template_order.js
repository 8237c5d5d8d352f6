// Order of the pack's templates in the template browser. Its default order is the order in which ComfyUI's server
// lists a pack's workflows (GET /api/workflow_templates: a glob, so the file system's order, not the titles'), and
// the browser keeps it; this sorts the pack's own list by title with numbers in numeric order ("DICEPTION 1 …",
// "DICEPTION 2 …", …, "PerSAM 3 …"), as its "alphabetical" sort does. Other packs' lists are left as they are.
import { api } from "../../scripts/api.js";

// This file is served as /extensions/<the pack's folder>/template_order.js; the server lists the pack under that name.
const PACK = decodeURIComponent(new URL(import.meta.url).pathname.split("/").at(-2));
const natural = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

if (typeof api.getWorkflowTemplates === "function") {
  const getWorkflowTemplates = api.getWorkflowTemplates;
  api.getWorkflowTemplates = async function () {
    const templates = await getWorkflowTemplates.apply(this, arguments);
    if (Array.isArray(templates?.[PACK])) templates[PACK] = [...templates[PACK]].sort(natural.compare);
    return templates;
  };
}
