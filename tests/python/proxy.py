"""A loopback TCP proxy between a client and tensord: counts round trips and can cut connections.

A round trip, seen from the wire, is a turn: the client sends after the server has sent
something since the client last sent. Pipelined traffic has few turns; lock-step traffic has one
per request. `drop()` closes every connection passing through, as a network failure would;
with `mute` set, the server's bytes are thrown away, so a request can be made to run with its
reply lost (what a drop at the wrong moment does).
"""
import select
import socket
import threading


class Proxy:
    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.turns = 0
        self.client_bytes = 0
        self.mute = False  # discard what the server sends
        self._server_spoke = True  # the first client send counts as a turn
        self._pairs = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            socks = [self.listener]
            with self._lock:
                for a, b in self._pairs:
                    socks += [a, b]
            try:
                readable, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for s in readable:
                if s is self.listener:
                    try:
                        client, _ = self.listener.accept()
                    except OSError:
                        continue
                    server = socket.create_connection(self.target)
                    with self._lock:
                        self._pairs.append((client, server))
                    continue
                with self._lock:
                    pair = next((p for p in self._pairs if s in p), None)
                if pair is None:
                    continue
                client, server = pair
                try:
                    data = s.recv(1 << 20)
                except OSError:
                    data = b""
                if not data:
                    self._close(pair)
                    continue
                if s is client:
                    self.client_bytes += len(data)
                    if self._server_spoke:
                        self.turns += 1
                        self._server_spoke = False
                    dst = server
                else:
                    self._server_spoke = True
                    if self.mute:
                        continue
                    dst = client
                try:
                    dst.sendall(data)
                except OSError:
                    self._close(pair)

    def _close(self, pair):
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for s in pair:
            try:
                s.close()
            except OSError:
                pass

    def drop(self):
        """Cuts every connection now (the client sees a reset or EOF)."""
        with self._lock:
            pairs = list(self._pairs)
        for p in pairs:
            for s in p:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._close(p)

    def close(self):
        self._stop = True
        self._thread.join()
        self.drop()
        self.listener.close()
