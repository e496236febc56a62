"""A TCP forwarder on 127.0.0.1 that can stall and drop a database (bench/faults.py).

* ``pause()``: a stall. Connections stay open and new ones are accepted, but no byte is
  forwarded either way: the client's kernel sees its bytes acknowledged (by the proxy) and
  no reply, as with a hung server or a stuck pooler.
* ``close()``: the database gone. The listener closes (new connections are refused) and
  every open connection is shut down.
* ``open()``: forwarding again, on the same port.
"""

from __future__ import annotations

import socket
import threading


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._state = "closed"  # "forward", "pause" or "closed"
        self._cond = threading.Condition()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._generation = 0  # bumped by close(): pipes of older connections stop

    # --- faults --------------------------------------------------------------------

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        with self._cond:
            self._listener = listener
            self._state = "forward"
            self._cond.notify_all()
            generation = self._generation
        threading.Thread(
            target=self._accept, args=(listener, generation), daemon=True, name="proxy-accept"
        ).start()

    def pause(self) -> None:
        with self._cond:
            self._state = "pause"

    def resume(self) -> None:
        with self._cond:
            self._state = "forward"
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._state = "closed"
            self._generation += 1
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
            self._cond.notify_all()
        if listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for conn in conns:
            _shut(conn)
            conn.close()

    # --- forwarding ----------------------------------------------------------------

    def _forwarding(self, generation: int) -> bool:
        """Wait while paused; False once this connection's generation is closed."""
        with self._cond:
            while self._state == "pause" and self._generation == generation:
                self._cond.wait()
            return self._state == "forward" and self._generation == generation

    def _accept(self, listener: socket.socket, generation: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._connect, args=(client, generation), daemon=True, name="proxy-conn"
            ).start()

    def _connect(self, client: socket.socket, generation: int) -> None:
        with self._cond:
            self._conns.append(client)
        if not self._forwarding(generation):  # a stall holds a new connection too
            _shut(client)
            return
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            _shut(client)
            return
        with self._cond:
            if self._generation != generation:
                _shut(client)
                upstream.close()
                return
            self._conns.append(upstream)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pipe, args=(a, b, generation), daemon=True, name="proxy-pipe"
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, generation: int) -> None:
        try:
            while data := src.recv(65536):
                if not self._forwarding(generation):
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(src)
            _shut(dst)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
