"""Which ComfyUI servers are alive, and at most ``k`` prompts in flight on each (ComfyUI has no queue limit).

Run as one Ray actor (``pipeline`` wraps it); every worker asks it for a slot before queuing a prompt and gives the
slot back when the prompt has finished. A worker asks for its own server first (each worker holds one server); when
that server has died it gets a free slot on any live one, so a dead server's jobs go to the others.
"""

import asyncio


class NoServerLeft(RuntimeError):
    pass


class ServerSlots:
    def __init__(self, urls, per_server: int):
        if not urls:
            raise ValueError("servers: expected at least one ComfyUI server URL")
        if per_server < 1:
            raise ValueError(f"in-flight prompts per server: expected at least 1, got {per_server}")
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
        """A slot on ``prefer`` when it is alive, else on the live server with the most free slots; waits for one."""
        changed = self._condition()
        async with changed:
            while True:
                live = [url for url in self.free if url not in self.dead]
                if not live:
                    raise NoServerLeft(f"no ComfyUI server is alive: {self.dead}")
                if prefer in live:
                    choice = prefer if self.free[prefer] > 0 else None
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
            self.dead.setdefault(url, why)
            changed.notify_all()

    async def report(self) -> dict:
        return {"jobs": dict(self.jobs), "dead": dict(self.dead)}
