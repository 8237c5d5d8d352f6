"""Which ComfyUI servers are alive, and at most ``k`` prompts in flight on each (ComfyUI has no queue limit).

Run as one Ray actor (``pipeline`` wraps it); every worker asks it for a slot before queuing a prompt and gives the
slot back when the prompt has finished. A worker asks for its own server first (each worker holds one server); when
that server is busy or has died it gets a free slot on any live one, so a dead server's jobs go to the others and
a re-admitted server gets work again. ``ServerWatch`` (run by the driver) probes the dropped servers and re-admits
those that answer; ``events`` lists each drop and re-admission once, for the console.
"""

import asyncio
import json
import time
import urllib.request


def normalise_url(url: str) -> str:
    """``http://host:8188/`` → ``http://host:8188`` (the client appends ``/prompt``, ``/view`` ...)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        raise ValueError(f"--server {url!r}: expected a URL such as http://127.0.0.1:8188")
    return url


class NoServerLeft(RuntimeError):
    pass


class ServerSlots:
    def __init__(self, urls, per_server: int):
        if not urls:
            raise ValueError("servers: expected at least one ComfyUI server URL")
        if per_server < 1:
            raise ValueError(f"in-flight prompts per server: expected at least 1, got {per_server}")
        self.events = []  # (seconds since start, "dropped" / "re-admitted", url, why)
        self.started = time.monotonic()
        self.free = {url: per_server for url in urls}
        self.dead = {}  # url -> why
        self.held = {url: 0 for url in urls}  # workers holding each server
        self.jobs = {url: 0 for url in urls}  # prompts finished per server
        self._changed = None

    def _condition(self):
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def hold(self) -> str:
        """The live server held by the fewest workers (a worker's own server); "" when none is alive (``acquire``
        then says so)."""
        live = [url for url in self.held if url not in self.dead]
        if not live:
            return ""
        url = min(live, key=lambda u: self.held[u])
        self.held[url] += 1
        return url

    async def acquire(self, prefer: str) -> str:
        """A slot on ``prefer`` when it is alive and has one free, else on the live server with the most free slots;
        waits for one."""
        changed = self._condition()
        async with changed:
            while True:
                live = [url for url in self.free if url not in self.dead]
                if not live:
                    raise NoServerLeft(f"no ComfyUI server is alive: {self.dead}")
                if prefer in live and self.free[prefer] > 0:
                    choice = prefer
                else:
                    choice = max(live, key=lambda u: self.free[u])
                    choice = choice if self.free[choice] > 0 else None
                if choice is not None:
                    self.free[choice] -= 1
                    return choice
                await changed.wait()

    async def release(self, url: str, finished: bool = True) -> None:
        changed = self._condition()
        async with changed:
            self.free[url] += 1
            self.jobs[url] += int(finished)
            changed.notify_all()

    async def drop(self, url: str, why: str) -> None:
        """Mark a server dead: no slot is given on it again."""
        changed = self._condition()
        async with changed:
            if url not in self.dead:
                self.dead[url] = why
                self.events.append((round(time.monotonic() - self.started, 1), "dropped", url, why))
            changed.notify_all()

    async def readmit(self, url: str) -> None:
        """A dropped server answers again: its slots are given again."""
        changed = self._condition()
        async with changed:
            if self.dead.pop(url, None) is not None:
                self.events.append((round(time.monotonic() - self.started, 1), "re-admitted", url, ""))
            changed.notify_all()

    async def dead_servers(self) -> list:
        return list(self.dead)

    async def report(self) -> dict:
        return {"jobs": dict(self.jobs), "dead": dict(self.dead), "events": list(self.events)}


def healthy(url: str, timeout: float = 5.0) -> bool:
    """Whether a ComfyUI server answers ``/system_stats`` with JSON."""
    try:
        with urllib.request.urlopen(url + "/system_stats", timeout=timeout) as answer:
            json.loads(answer.read())
        return True
    except Exception:
        return False


class ServerWatch:
    """The driver's view of the servers: ``step()`` re-admits each dropped server that answers ``probe`` and returns
    the console lines of the drops and re-admissions since the last step (one line each)."""

    def __init__(self, slots, probe=healthy):
        self.slots, self.probe, self.shown = slots, probe, 0

    def step(self) -> list:
        for url in self.slots.dead_servers():
            if self.probe(url):
                self.slots.readmit(url)
        events = self.slots.report()["events"]
        lines = [f"server {url} {what} at {at:g} s" + (f": {why}" if why else "")
                 for at, what, url, why in events[self.shown:]]
        self.shown = len(events)
        return lines
