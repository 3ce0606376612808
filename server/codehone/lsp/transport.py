"""How bytes reach the server: stdio, or TCP on 127.0.0.1 for one editor at a time.

pygls' own loops (``start_io``, ``start_tcp``) read frames with a reader that a single bad frame
kills or deafens (see ``codehone.lsp.framing``), and its TCP server shares one protocol between
all connections: a second client takes over the first one's responses, and any connection that
closes, even a port scan's connect-and-close, stops the server. Here both transports feed the
same ``FrameParser`` and hand its events to the protocol (``CodehoneProtocol.receive`` /
``reject_unreadable``); ``exit`` (or the editor's death) ends the session.

TCP serves one editor per server, each connection a fresh session. An editor's session is a
whole LSP conversation (initialize, documents, options, workspace folders), so two editors on
one server would either share that state, which is wrong, or need a model each, which is what
a second ``codehone serve`` gives more simply. So a connection that arrives while an editor is
connected is refused (closed, with one log line) and never touches the connected session; when
a connection ends, for whatever reason (``exit``, a dropped connection, a stray
connect-and-close), its session is closed and the server goes on listening for the next one,
which starts from scratch (only the ``--model`` model, loaded at startup, is shared). The server
stops on SIGINT or SIGTERM. It listens on 127.0.0.1 only: anyone who can reach the port can
drive it, so it is never offered beyond this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Generic, TypeVar

from codehone.core.errors import CodehoneError
from codehone.lsp.framing import FrameParser, Message
from codehone.lsp.protocol import CodehoneProtocol

log = logging.getLogger("codehone.transport")

CHUNK_BYTES = 65536
LOOPBACK = "127.0.0.1"
S = TypeVar("S")


async def run_session(protocol: CodehoneProtocol, read: Callable[[], Awaitable[bytes]]) -> int:
    """Feed what ``read`` returns (b"" at the end of input) to ``protocol`` until the input ends
    or the session does (``exit``: its status; 0 when the input just ended)."""
    ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def end(status: int) -> None:
        if not ended.done():
            ended.set_result(status)

    protocol.end_session = end
    parser = FrameParser()
    while not ended.done():
        reading = asyncio.ensure_future(read())
        await asyncio.wait({reading, ended}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            reading.cancel()
            break
        try:
            chunk = reading.result()
        except OSError as exc:
            log.info("the connection to the client broke: %s", exc)
            break
        if not chunk:
            log.info("the client closed its end of the connection")
            break
        for event in parser.feed(chunk):
            if isinstance(event, Message):
                protocol.receive(event.value)
            else:
                protocol.reject_unreadable(event.reason)
            if ended.done():
                break  # what follows ``exit`` is not read
    return ended.result() if ended.done() else 0


class _StdinChunks:
    """stdin, read on a daemon thread (a read blocked there must not keep the process alive after
    ``exit``) and handed to the event loop a few chunks at a time."""

    def __init__(self, stdin: BinaryIO, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
        try:  # the file descriptor itself: a thread blocked in a buffered reader holds its
            fd = stdin.fileno()  # lock, and the interpreter aborts at exit waiting for it
            self._read: Callable[[int], bytes] = lambda size: os.read(fd, size)
        except (AttributeError, OSError, ValueError):
            self._read = getattr(stdin, "read1", stdin.read)
        self._loop = loop
        threading.Thread(target=self._pump, name="codehone-stdin", daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = self._read(CHUNK_BYTES)
            except (OSError, ValueError):
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop).result()
            except Exception:  # the loop is gone: the session is over
                return
            if not chunk:
                return

    async def read(self) -> bytes:
        return await self._queue.get()


class _StdoutWriter:
    def __init__(self, stdout: BinaryIO) -> None:
        self._stdout = stdout

    def write(self, data: bytes) -> None:
        self._stdout.write(data)
        self._stdout.flush()

    def close(self) -> None:
        pass  # stdout stays open: nothing but protocol is ever written to it anyway


class _Discard:
    """The writer of a session whose connection is gone: late messages go nowhere."""

    def write(self, data: bytes) -> None:
        log.debug("a message after the session ended was dropped")

    def close(self) -> None:
        pass


def serve_stdio(
    protocol: CodehoneProtocol, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None
) -> int:
    """Serve one session over stdin/stdout; the exit status (``exit``'s, or 0 at end of input)."""
    protocol.parent_is_editor = True
    protocol.set_writer(_StdoutWriter(stdout or sys.stdout.buffer))

    async def main() -> int:
        chunks = _StdinChunks(stdin or sys.stdin.buffer, asyncio.get_running_loop())
        return await run_session(protocol, chunks.read)

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        log.error("the client closed stdout: exiting")
        return 1


class TcpServer(Generic[S]):
    """One editor at a time on 127.0.0.1:``port``; each connection a session made by
    ``open_session`` (a server whose ``protocol`` is a CodehoneProtocol) and given to
    ``close_session`` when it ends."""

    def __init__(
        self,
        port: int,
        open_session: Callable[[], Awaitable[S]],
        close_session: Callable[[S], None],
    ) -> None:
        self.port = port
        self._open_session = open_session
        self._close_session = close_session
        self._busy = False
        self.sessions = 0

    async def serve(self) -> None:
        try:
            server = await asyncio.start_server(self._connection, LOOPBACK, self.port)
        except OSError as exc:
            raise CodehoneError(
                f"cannot listen on {LOOPBACK}:{self.port}: {exc.strerror}"
            ) from None
        port = server.sockets[0].getsockname()[1]
        log.info("serving on %s:%d (one editor at a time)", LOOPBACK, port)
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername", ("?", "?"))[:2]
        peer = f"{host}:{port}"
        if self._busy:
            log.warning("refused a connection from %s: an editor is already connected", peer)
            writer.close()
            return
        self._busy = True
        self.sessions += 1
        try:
            await self._session(reader, writer, peer)
        finally:
            self._busy = False
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        try:
            session: Any = await self._open_session()
        except Exception as exc:  # e.g. the --model directory no longer loads
            log.error("connection from %s closed: no session (%s)", peer, exc)
            return
        protocol: CodehoneProtocol = session.protocol
        protocol.set_writer(writer)  # type: ignore[arg-type]  # write(bytes) and close()
        log.info("session %d: an editor connected from %s", self.sessions, peer)
        status = 0
        try:
            status = await run_session(protocol, lambda: reader.read(CHUNK_BYTES))
        finally:
            protocol.set_writer(_Discard())
            for future in list(protocol._request_futures.values()):
                future.cancel()
            self._close_session(session)
            log.info(
                "session %d ended (exit status %d): listening for the next editor",
                self.sessions,
                status,
            )


def serve_tcp(
    port: int,
    open_session: Callable[[], Awaitable[S]],
    close_session: Callable[[S], None],
) -> int:
    """Serve editors one at a time until interrupted."""
    asyncio.run(TcpServer(port, open_session, close_session).serve())
    return 0
