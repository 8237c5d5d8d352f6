"""A test server's websocket messages (progress, interrupts) as they arrive, and how soon an interrupt took effect.

Interrupt latency is judged in the machine's own time: at most ``ITERATIONS_WITHIN`` units of work (their pace
measured from the progress messages of the same run) plus ``REPLY_S`` for the request and the reply to travel through
a server that shares 2 cores with other work (2.75 s measured at load 17, where 2 s failed). The server tests prove the
wiring; that a loop stops within ONE unit is counted exactly in-process (test_interrupt_granularity.py)."""

import json
import threading
import time

import websocket

ITERATIONS_WITHIN = 20
REPLY_S = 5.0


def listen(comfy, messages, stop):
    ws = websocket.create_connection(comfy.url.replace("http", "ws") + f"/ws?clientId={comfy.client_id}", timeout=1)
    try:
        while not stop.is_set():
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(raw, str):
                messages.append((time.time(), json.loads(raw)))
    finally:
        ws.close()


def progress_of(messages, node="perceive"):
    return [m["data"] for _, m in messages if m["type"] == "progress" and m["data"].get("node") in (node, None)]


def with_listener(comfy, action):
    """``action(messages)`` while the server's messages are collected into ``messages`` as (arrival time, message)."""
    messages, stop = [], threading.Event()
    thread = threading.Thread(target=listen, args=(comfy, messages, stop), daemon=True)
    thread.start()
    time.sleep(0.5)
    try:
        return action(messages), messages
    finally:
        stop.set()
        thread.join(5)


def stopped_after(entry, sent, received) -> float:
    """Seconds from /interrupt to the server's own record of the stop (ComfyUI v0.8.0+ stamps its status messages),
    else to its arrival here (the 2024-03 build does not stamp them)."""
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_interrupted" and "timestamp" in data:
            return data["timestamp"] / 1000 - sent
    return received[0] - sent if received else float("inf")
