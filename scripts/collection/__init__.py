"""Label a whole collection (a manifest of jobs) on Ray Data: ComfyUI servers over HTTP, or the engine in-process.

- ``jobs``: the manifest (one row per job with a stable ``id``) and the file-system key of a job.
- ``job_outputs``: a job's answers, written into a temporary folder and renamed into place (complete or absent).
- ``server_slots``: which ComfyUI servers are alive, and at most k prompts in flight on each.
- ``comfy_labeler`` / ``engine_labeler``: the two executors (one job per call; a bad job fails alone).
- ``pipeline``: the Ray Data pipeline (ray is imported there and by the driver, scripts/label_collection.py; nothing
  in nodes/ or models/ imports it).
"""
