"""A TCP proxy on 127.0.0.1 that can cut one client off its server, for fault tests.

The HTTP fault proxy (faultproxy.py) answers for moto at the HTTP level; the API
server speaks TLS, so cutting an operator's API connection is done one layer down:
bytes are relayed unchanged (TLS end to end, the server certificate is for
127.0.0.1 whatever the port), and `cut()` drops every open connection with a reset
and resets every new one at once, as a crashed node or a severed network path looks
to a client: `ConnectionResetError` / urllib3 `ProtocolError`, then `MaxRetryError`.
`heal()` relays again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit


class TcpProxy:
    def __init__(self, upstream: str):
        """`upstream`: a URL or host:port on 127.0.0.1 (the scheme is ignored)."""
        url = urlsplit(upstream if "//" in upstream else f"//{upstream}")
        if url.hostname != "127.0.0.1" or url.port is None:
            raise ValueError(f"upstream must be on 127.0.0.1 with a port, not {upstream!r}")
        self.upstream = (url.hostname, url.port)
        self._lock = threading.Lock()
        self._cut = False
        self._open: set[socket.socket] = set()
        self.accepted = 0
        """Connections accepted so far (relayed or reset)."""
        self.reset = 0
        """Connections reset by `cut()` or while cut."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            victims, self._open = self._open, set()
        for sock in victims:
            self._reset(sock)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def stop(self) -> None:
        self.cut()
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
            if cut:
                self._reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                self._reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._cut:  # cut while connecting
                    self._reset(client)
                    self._reset(server, count=False)
                    continue
                self._open |= {client, server}
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end the other, so the peer sees the close too.
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()

    def _reset(self, sock: socket.socket, count: bool = True) -> None:
        """Close with an RST (linger 0): the client's next read or write fails at once."""
        if count:
            with self._lock:
                self.reset += 1
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # shutdown() wakes a pump thread blocked in recv() on this socket (close() alone
        # would not, and the socket would live on until that recv returned).
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
