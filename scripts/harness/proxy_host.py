"""The fault proxies (``harness.proxy``) in a process of their own.

A proxy stands for the network between a service and its server: it should
add no delay of its own while its path is meant to pass. Run in a fault
driver's event loop, it does: every byte it relays waits behind the driver's
own work (its clients, its checker), and when that loop ran late, every query
through it took longer, as if the path were delayed (measured in a chaos run's
``db_saturation`` bursts: a loop 180 to 290 ms late over a burst doubled how
long the instance held a PostgreSQL connection, and its queue refused; see
docs/chaos.md). Here they run in a child process whose loop only relays, at a
higher priority when the system allows it (the network is served before any
process too).

``ProxyHost`` starts the child and talks to it over its stdin and stdout, one
JSON line each way per command; ``RemoteProxy`` is one proxy in it, with
``FaultProxy``'s operations, awaited: a mode is in force when ``set_mode``
returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

from harness.lag import LoopLag
from harness.proxy import FaultProxy, Mode

PRIORITY: Final = -5  # the child's niceness, when the system allows it
SCRIPTS: Final = Path(__file__).resolve().parent.parent


class ProxyHostError(RuntimeError):
    """The proxy process refused a command or is gone."""


class RemoteProxy:
    """One ``FaultProxy`` in the host's process."""

    def __init__(self, host: ProxyHost, ident: int, port: int) -> None:
        self._host = host
        self.ident = ident
        self.port = port

    async def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        await self._host.call("mode", id=self.ident, mode=mode, delay_s=delay_s)

    async def upstream_ports(self) -> set[int]:
        """Local ports of the connections open to the server now."""
        return set((await self._host.call("ports", id=self.ident))["upstream"])

    async def sniffed(self) -> set[int]:
        """The upstream ports of the connections that sent the sniffed bytes."""
        return set((await self._host.call("ports", id=self.ident))["sniffed"])

    async def close(self) -> None:
        await self._host.call("close", id=self.ident)


class ProxyHost:
    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one command at a time: each reply is the next line

    async def start(self) -> None:
        path = [str(SCRIPTS), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "harness.proxy_host",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )

    async def proxy(self, upstream_port: int, *, sniff: bytes | None = None) -> RemoteProxy:
        reply = await self.call(
            "open", upstream=upstream_port, sniff=None if sniff is None else sniff.hex()
        )
        return RemoteProxy(self, reply["id"], reply["port"])

    async def lag(self) -> str:
        """How late the proxies' loop ran since the last ask (``LagFigures.text``)."""
        return str((await self.call("lag"))["text"])

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise ProxyHostError("the proxy process is not running")
        async with self._lock:
            proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
            await proc.stdin.drain()
            line = await proc.stdout.readline()
        if not line:
            raise ProxyHostError(f"the proxy process is gone (exit {proc.returncode})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise ProxyHostError(reply["error"])
        return reply

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the child closes its proxies and leaves
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class _Child:
    """The child's side: the proxies, by id, and its own loop's lag."""

    def __init__(self) -> None:
        self.proxies: dict[int, FaultProxy] = {}
        self.lag = LoopLag()
        self.lag_mark = self.lag.mark()

    async def run(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "open":
            sniff = None if args.get("sniff") is None else bytes.fromhex(args["sniff"])
            proxy = FaultProxy(args["upstream"], sniff=sniff)
            await proxy.start()
            ident = len(self.proxies) + 1
            self.proxies[ident] = proxy
            return {"id": ident, "port": proxy.port}
        if op == "lag":
            text = self.lag.since(self.lag_mark).text()
            self.lag_mark = self.lag.mark()
            return {"text": text}
        if op not in ("mode", "ports", "close"):
            raise ValueError(f"unknown command {op!r}")
        proxy = self.proxies[args["id"]]
        if op == "mode":
            proxy.set_mode(args["mode"], float(args.get("delay_s", 0.0)))
            return {}
        if op == "ports":
            return {"upstream": sorted(proxy.upstream_ports()), "sniffed": sorted(proxy.sniffed)}
        await proxy.close()
        return {}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self.lag.start()
        try:
            while line := await reader.readline():
                command = json.loads(line)
                try:
                    reply = await self.run(command.pop("op"), command)
                except (KeyError, ValueError, OSError) as exc:
                    reply = {"error": repr(exc)}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
        finally:
            for proxy in self.proxies.values():
                await proxy.close()
            await self.lag.close()


def main() -> None:
    with contextlib.suppress(PermissionError):
        os.nice(PRIORITY)
    asyncio.run(_Child().serve())


if __name__ == "__main__":
    main()
