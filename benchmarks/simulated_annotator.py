"""One simulated annotator for ``benchmarks/annotate_load.py``: an asyncio task with its own
aiohttp.ClientSession (one connection, keep-alive when the server offers it, as a browser has) and
API token, looping ``POST next`` / think / ``POST ratings`` with retries.

Why aiohttp, and what it costs in client CPU per request, is in annotate_load.py's docstring and
docs/results.md (issue 17).
"""
from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp

QKEYS = ["q1", "q2", "q3", "q4"]
ATTEMPTS = 200  # per request; at most about 1 s apart, so a few minutes of outage


class Annotator:
    """One annotator: an asyncio task with its own HTTP client (its own connection, as a browser has) and token."""

    def __init__(self, name: str, token: str, base: str, args, stop: asyncio.Event):
        self.username, self.token, self.base, self.args, self.stop = name, token, base, args, stop
        self.latencies: list[float] = []
        self.acked: set[tuple[str, str]] = set()  # (item, question) the server confirmed
        self.errors_seen = self.retries = self.submits = 0
        self.error: str | None = None
        self.rng = random.Random(name)
        self.trace: list[tuple[float, str, float]] = []  # (start, request, ms) for --trace
        self.backoff_rng = random.Random(f"{name}-backoff")  # keeps the answers' sequence independent of errors
        self.client: aiohttp.ClientSession | None = None
        self.reused = False  # set by aiohttp's trace when a request goes on a kept-alive connection

    async def open(self) -> None:
        """Open the client and warm the server up (not measured) as a server in use is: every
        gunicorn worker has its database connection and has run the API's code paths once.
        Without it the first second of a run held requests of up to 4.5 s, a start-up cost, not load."""
        reuse = aiohttp.TraceConfig()
        reuse.on_connection_reuseconn.append(self._connection_reused)
        self.client = aiohttp.ClientSession(
            self.base, headers={"Authorization": f"Token {self.token}"},
            connector=aiohttp.TCPConnector(limit=1),  # one connection, as a browser has for one site
            timeout=aiohttp.ClientTimeout(total=30), trace_configs=[reuse],
        )
        for _ in range(self.args.warmup):
            await self.send("GET", "/api/studies/load/")

    async def _connection_reused(self, session, context, params) -> None:
        self.reused = True

    async def send(self, method: str, url: str, json_body=None) -> tuple[int, bytes]:
        """One request on the annotator's connection: (status, body). A kept-alive connection the
        server closed while idle is reopened once without raising, as browsers do (aiohttp does it
        for idempotent methods only; both POSTs here are safe to repeat). Raises aiohttp.ClientError
        or TimeoutError (30 s) otherwise."""
        try:
            return await self._send_once(method, url, json_body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if not self.reused:
                raise
        return await self._send_once(method, url, json_body)  # the server closed an idle connection

    async def _send_once(self, method: str, url: str, json_body) -> tuple[int, bytes]:
        self.reused = False
        async with self.client.request(method, url, json=json_body) as response:
            return response.status, await response.read()

    async def request(self, method: str, url: str, json_body=None) -> tuple[int, bytes]:
        """Send; on a connection error or a 5xx (a killed worker, a restarting database), count it, back off,
        retry. Returns (status, body bytes) of the first answer under 500; RuntimeError after ATTEMPTS tries."""
        for attempt in range(ATTEMPTS):
            t0 = time.perf_counter()
            try:
                status, content = await self.send(method, url, json_body)
            except Exception:
                status = None
            if status is not None and status < 500:
                self.latencies.append((time.perf_counter() - t0) * 1000)
                self.trace.append((t0, "next" if url.endswith("/next/") else "submit", self.latencies[-1]))
                return status, content
            self.errors_seen += 1
            self.retries += 1
            await asyncio.sleep(min(0.05 * 2 ** min(attempt, 5), 1.0) * self.backoff_rng.uniform(0.5, 1.5))
        raise RuntimeError(f"{self.username}: {method} {url} failed {ATTEMPTS} times")

    async def think(self) -> None:
        if self.args.think_ms > 0:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.args.think_ms / 1000)

    async def run(self) -> None:
        try:
            while not self.stop.is_set():
                await self.think()
                status, content = await self.request("POST", "/api/studies/load/next/")
                if status == 204:
                    return
                if status >= 400:
                    raise RuntimeError(f"{self.username}: next answered {status}: {content[:300]!r}")
                item = json.loads(content)["item"]
                choices = [self.rng.choice("ABS") for _ in QKEYS]
                body = {"answers": [{"question": q, "choice": c, "confidence": self.rng.randint(1, 5)}
                                    for q, c in zip(QKEYS, choices)]}
                await self.think()
                status, content = await self.request("POST", f"/api/studies/load/items/{item}/ratings/", json_body=body)
                if status not in (200, 201):
                    raise RuntimeError(f"{self.username}: submit answered {status}: {content[:300]!r}")
                self.submits += 1
                self.acked.update((item, q) for q in QKEYS)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            await self.client.close()  # the session closes its connector and the connection
