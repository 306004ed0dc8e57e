"""A minimal HTTP/1.1 client on asyncio streams, for load benchmarks that share the machine with the server.

``benchmarks/annotate_load.py`` measures the server; its clients run on the same 2 cores. With
one httpx client per annotator the clients took 3 ms of CPU per request (100 threads with
httpx.Client; httpx.AsyncClient in one thread still 2.6 ms), CPU the server then did not get.
This client does only what the benchmark needs (one connection per annotator, as a browser has;
keep-alive when the server offers it; Content-Length or chunked bodies; JSON) for a tenth of that.
It is not a general HTTP client: no TLS, no redirects, no proxies, no compression.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.text[:300]}")


class Connection:
    """One client connection to ``host:port`` that sends ``headers`` with every request.

    ``request`` raises OSError (or asyncio.IncompleteReadError, a subclass of EOFError) when the
    connection fails; a kept-alive connection that the server closed while idle is reopened once
    without raising, as browsers do.
    """

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **(headers or {})}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, *, json_body=None) -> Response:
        """Send one request and read the whole response (status, headers, body)."""
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        data = (head + "\r\n").encode() + body
        reused = self.writer is not None
        try:
            return await asyncio.wait_for(self._send(data), self.timeout)
        except (OSError, EOFError):
            await self.close()
            if not reused:
                raise
        return await asyncio.wait_for(self._send(data), self.timeout)  # the server closed an idle connection

    async def _send(self, data: bytes) -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(data)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = b""
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                content += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        elif "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif status in (204, 304):
            content = b""
        else:
            content = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, content)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None
