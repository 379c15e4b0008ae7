"""A TCP proxy on 127.0.0.1 that can cut one client off its server, for fault tests.

The HTTP fault proxy (faultproxy.py) answers for moto at the HTTP level; the API
server speaks TLS, so cutting an operator's API connection is done one layer down:
bytes are relayed unchanged (TLS end to end, the server certificate is for
127.0.0.1 whatever the port). Two ways to cut, as clients meet them:

- "reset": every open connection and every new one is reset at once (a crashed
  peer, a severed path that answers with RST): the client fails fast, with
  `ConnectionResetError` / urllib3 `ProtocolError`, then `MaxRetryError`.
- "blackhole": nothing arrives any more, nothing is refused (a partition that drops
  packets): open connections go silent, new ones are accepted and never answered;
  the client learns only from its own timeouts.

`heal()` relays again; connections held silent are reset then, so clients reconnect.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Literal
from urllib.parse import urlsplit

Cut = Literal["reset", "blackhole"]


class TcpProxy:
    def __init__(self, upstream: str):
        """`upstream`: a URL or host:port on 127.0.0.1 (the scheme is ignored)."""
        url = urlsplit(upstream if "//" in upstream else f"//{upstream}")
        if url.hostname != "127.0.0.1" or url.port is None:
            raise ValueError(f"upstream must be on 127.0.0.1 with a port, not {upstream!r}")
        self.upstream = (url.hostname, url.port)
        self._lock = threading.Lock()
        self._cut: Cut | None = None
        self._open: set[socket.socket] = set()  # relaying
        self._silent: set[socket.socket] = set()  # held without relaying (blackhole)
        self.accepted = 0
        """Connections accepted so far (relayed, reset or held)."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def cut(self, how: Cut = "reset") -> None:
        with self._lock:
            self._cut = how
            if how == "blackhole":
                # The pumps see these in _silent and drop what they read from now on.
                self._silent |= self._open
                self._open = set()
                return
            victims, self._open = self._open, set()
        for sock in victims:
            _reset(sock)

    def heal(self) -> None:
        with self._lock:
            self._cut = None
            victims, self._silent = self._silent, set()
        for sock in victims:
            _reset(sock)

    def stop(self) -> None:
        self.cut("reset")
        self.heal()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                self.accepted += 1
                cut = self._cut
                if cut == "blackhole":
                    self._silent.add(client)
                    continue
            if cut == "reset":
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._cut is not None:  # cut while connecting: as if cut before
                    if self._cut == "blackhole":
                        self._silent.add(client)
                    else:
                        _reset(client)
                    _reset(server)
                    continue
                self._open |= {client, server}
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    silent = src in self._silent or dst in self._silent
                if not silent:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end the other, so the peer sees the close too.
            with self._lock:
                self._open -= {src, dst}
                self._silent -= {src, dst}
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0): the peer's next read or write fails at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # shutdown() wakes a pump thread blocked in recv() on this socket (close() alone
    # would not, and the socket would live on until that recv returned).
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
