"""The Ray Data pipeline: manifest rows → an actor pool of labelers → one result row per job, streamed to the driver.

Ray is imported here and by the driver (scripts/label_collection.py, to count a cluster's GPUs), never by nodes/ or
models/ (``pip install "comfyui-diception-persam[ray]"``). Ray Data streams the
rows with backpressure, restarts a worker that dies (its in-flight rows are retried on a live worker) and runs the
same code on a laptop (``ray.init()`` starts a local cluster) and on a cluster (``address``: ``ray start --head`` on
one machine, ``ray start --address=HEAD:6379`` on the others, or ``auto`` on a node of the cluster).
"""

import json
import logging
import warnings
from pathlib import Path

import ray
from ray.data import ActorPoolStrategy

from .server_slots import ServerSlots

ROOT = Path(__file__).resolve().parents[2]
# Not sent to the workers with the code: the miniature models' weights and logs (20 MB under scripts/, used by the
# benches and the demo, never by a labeller) and byte-code (gitignore syntax, relative to each package folder).
UPLOAD_EXCLUDES = ["*.safetensors", "*.log.json", "__pycache__/"]


def start(address=None, num_cpus=None, num_gpus=None) -> None:
    """Connect to a Ray cluster (``address``) or start a local one; the pack's ``scripts`` and ``models`` packages
    travel to the workers (``py_modules``), so the cluster's machines need its requirements, not a checkout."""
    if ray.is_initialized():
        return
    runtime_env = {"py_modules": [str(ROOT / "scripts"), str(ROOT / "models")], "excludes": UPLOAD_EXCLUDES}
    local = {} if address else {"num_cpus": num_cpus, "num_gpus": num_gpus, "include_dashboard": False}
    quiet()
    try:
        # no address: a private local Ray ("local"; None would join a `ray start` cluster of this machine, or RAY_ADDRESS)
        ray.init(address=address or "local", runtime_env=runtime_env, log_to_driver=False, logging_level=logging.ERROR,
                 **local)
    except (ConnectionError, RuntimeError) as e:
        chain, cause = [], e
        while cause is not None:
            chain.append(str(cause))
            cause = cause.__cause__ or cause.__context__
        if address and any("AuthToken" in text or "auth" in text.lower() for text in chain):
            raise ConnectionError(f"--address {address}: the cluster asks for its token (Ray's token authentication, the "
                                  "default of `ray start`): run with RAY_AUTH_MODE=token and the cluster's token in "
                                  "~/.ray/auth_token or RAY_AUTH_TOKEN (docs/labeller.md, A real cluster)") from None
        raise
    quiet()


def quiet() -> None:
    """Keep Ray's own log lines (start-up INFO, Ray Data's progress blocks and memory notes) off the console, where
    the labeller's progress line and summary are; they stay in Ray's session logs (/tmp/ray/session_*/logs)."""
    for name in ("ray", "ray.data", "ray._private", "ray.runtime_env"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    if hasattr(context, "enable_rich_progress_bars"):
        context.enable_rich_progress_bars = False


class RemoteSlots:
    """``ServerSlots`` behind its Ray actor, with the plain method calls the labeler makes."""

    def __init__(self, actor):
        self.actor = actor

    def hold(self):
        return ray.get(self.actor.hold.remote())

    def acquire(self, prefer):
        return ray.get(self.actor.acquire.remote(prefer))

    def release(self, url, finished=True):
        ray.get(self.actor.release.remote(url, finished))

    def drop(self, url, why):
        ray.get(self.actor.drop.remote(url, why))

    def readmit(self, url):
        ray.get(self.actor.readmit.remote(url))

    def dead_servers(self):
        return ray.get(self.actor.dead_servers.remote())

    def report(self):
        return ray.get(self.actor.report.remote())


def server_slots(urls, per_server: int) -> RemoteSlots:
    """One ``ServerSlots`` actor for the run (it ends with the driver)."""
    actor = ray.remote(num_cpus=0, max_concurrency=1000)(ServerSlots).remote(list(urls), per_server)
    return RemoteSlots(actor)


def label(rows, labeler, constructor_kwargs: dict, workers: int, concurrent_per_worker: int = 1,
          num_cpus: float = 1, num_gpus: float = 0, rows_per_block: int = 1):
    """Yield one result row per job (``{"id", "status", "error", "server", "seconds"}``) as the jobs finish.

    ``labeler`` is a class called with ``{"job": <the row as JSON>}``; ``workers`` instances run in an actor pool,
    each with ``num_cpus`` / ``num_gpus`` (1: one worker per GPU) and up to ``concurrent_per_worker`` calls at a
    time. Rows travel ``rows_per_block`` to a Ray task: 1 keeps every job separately schedulable (a dead worker's
    rows go to the others one by one); more lowers the per-job overhead of very short jobs."""
    items = [{"job": json.dumps(row)} for row in rows]
    if not items:
        return
    blocks = max(1, -(-len(items) // max(1, rows_per_block)))
    warnings.filterwarnings("ignore", message=".*ray_remote_args.*")  # max_concurrency has no named parameter yet
    dataset = ray.data.from_items(items, override_num_blocks=blocks).map(
        labeler,
        fn_constructor_kwargs=constructor_kwargs,
        compute=ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=max(2, 2 * concurrent_per_worker),
                                  enable_true_multi_threading=concurrent_per_worker > 1),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_concurrency=concurrent_per_worker,  # calls at a time per worker (threads; Ray Core's actor option)
    )
    yield from dataset.iter_rows()
