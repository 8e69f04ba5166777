"""Extra "hosts" for a real server: TCP forwarders in a subprocess of their own.

``python -m compose.bench._forward TARGET_PORT [TARGET_PORT ...]`` listens on
one free 127.0.0.1 port per argument, forwards each connection to its
target, and prints the listening ports (space-separated) once ready. It
runs until stdin closes, so it dies with the benchmark. Used to give the
probe benchmarks 10 or 30 live hosts with three servers; the forwarder's
CPU is its own process's, never counted as ours.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _handler(target: int):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", target), 5
            )
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def main(targets: list[int]) -> None:
    servers = [await asyncio.start_server(_handler(t), "127.0.0.1", 0) for t in targets]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(" ".join(map(str, ports)), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent goes away
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]]))
