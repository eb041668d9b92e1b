"""Scale-out, the daemon's side (issue 20): three daemons on loopback that know each other as
peers, spoken to in raw frames. Node-named tokens, MOVED to a session's owner, UNKNOWN_NODE for
forged or malformed tokens, NODE_FULL naming a peer with room, NodeInfo and its auth, a killed
peer seen as unreachable, a restarted node resuming its sessions under the same tokens, and
--check-config. Every wait polls the daemons' own reports against a deadline."""
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.request

import pytest

from conftest import BINARY, Daemon
from wire import pb

HEADER = struct.Struct(">IQ")
HEX = "0123456789abcdef" * 2


def free_ports(n):
    """n loopback ports free now (the kernel's choice, released for the daemons to bind)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Raw:
    """One connection speaking frames."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.next = 1

    def call(self, **body):
        req = pb.Request(id=self.next, **body)
        self.next += 1
        meta = req.SerializeToString()
        self.s.sendall(HEADER.pack(len(meta), 0) + meta)
        head = self._read(12)
        ml, dl = HEADER.unpack(head)
        payload = self._read(ml + dl)
        resp = pb.Response()
        resp.ParseFromString(payload[:ml])
        self.data = payload[ml:]
        assert resp.id == req.id
        return resp

    def _read(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            assert chunk, "connection closed instead of a reply"
            b += chunk
        return b

    def close(self):
        self.s.close()


def hello(port, token=b"", auth=""):
    r = Raw(port)
    resp = r.call(hello=pb.Hello(min_version=1, max_version=2, session_token=token,
                                 auth_token=auth))
    return r, resp


def node_info(port, auth=""):
    r = Raw(port)
    try:
        return r.call(node_info=pb.NodeInfo(auth_token=auth))
    finally:
        r.close()


def wait_for(what, check, deadline_s=20):
    end = time.time() + deadline_s
    while True:
        got = check()
        if got:
            return got
        assert time.time() < end, "timed out waiting for " + what
        time.sleep(0.05)


def sees_all(port, ids):
    """True once the node at port has heard from every node in ids."""
    resp = node_info(port)
    seen = {p.node_id for p in resp.node_info.peers if p.reachable}
    return set(ids) <= seen


class Cluster:
    def __init__(self, tmp_path, n=3, extra=None, interval="100ms"):
        # A port probed free may be taken by another process before the daemon binds it: then
        # that start fails, and the whole set starts again on fresh ports.
        for attempt in range(3):
            self.ports = free_ports(n)
            self.ids = ["n%d" % i for i in range(n)]
            self.daemons = []
            for i, port in enumerate(self.ports):
                peers = ",".join("127.0.0.1:%d" % p for j, p in enumerate(self.ports) if j != i)
                args = ["--node-id", self.ids[i], "--advertise", "127.0.0.1:%d" % port,
                        "--peers", peers, "--peer-interval", interval]
                args += (extra or {}).get(i, [])
                d = Daemon(*args, listen=("--listen", "127.0.0.1:%d" % port))
                self.daemons.append(d)
                if d.port != port:
                    break
            if all(d.port == p for d, p in zip(self.daemons, self.ports)) and \
                    len(self.daemons) == n:
                return
            text = self.daemons[-1].text()
            self.stop()
            assert "address already in use" in text.lower() and attempt < 2, text

    def ready(self):
        for i, port in enumerate(self.ports):
            if self.daemons[i].proc.poll() is None:
                others = [x for j, x in enumerate(self.ids) if j != i
                          and self.daemons[j].proc.poll() is None]
                wait_for("%s to hear from its peers" % self.ids[i],
                         lambda: sees_all(port, others))

    def stop(self):
        codes = []
        for d in self.daemons:
            if d.proc.poll() is None:
                codes.append(d.stop())
        return codes


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(**kw):
        c = Cluster(tmp_path, **kw)
        made.append(c)
        c.ready()
        return c
    yield make
    for c in made:
        assert all(code == 0 for code in c.stop())


def test_tokens_name_their_node_and_resume_elsewhere_moves(cluster):
    c = cluster()
    for i, port in enumerate(c.ports):
        r, resp = hello(port)
        assert resp.status.code == pb.OK
        tok = resp.hello.session_token
        assert re.fullmatch(rb"n%d\.[0-9a-f]{32}" % i, tok), tok
        assert resp.hello.node_id == c.ids[i]
        assert resp.hello.advertise == "127.0.0.1:%d" % port
        r.close()
    r1, resp = hello(c.ports[1])
    tok = resp.hello.session_token
    # Through n0 and n2: MOVED, naming n1 and the address it advertises.
    for port in (c.ports[0], c.ports[2]):
        r, moved = hello(port, tok)
        assert moved.status.code == pb.MOVED, moved.status.message
        assert moved.status.node == "n1"
        assert moved.status.address == "127.0.0.1:%d" % c.ports[1]
        assert "n1" in moved.status.message
        r.close()
    r1.close()
    # At the owner it resumes, under the same token.
    r, again = hello(c.ports[1], tok)
    assert again.status.code == pb.OK and again.hello.resumed
    assert again.hello.session_token == tok
    r.close()
    stats = Raw(c.ports[0])
    stats.call(hello=pb.Hello(max_version=2))
    st = stats.call(stats=pb.Stats()).stats
    assert st.node_id == "n0" and st.moved == 1
    assert sorted(p.node_id for p in st.peers) == ["n1", "n2"]
    assert all(p.reachable and p.last_seen_ms > 0 for p in st.peers)
    stats.close()


@pytest.mark.parametrize("token,node,needle", [
    (b"n9." + HEX.encode(), "n9", "does not know"),                # a node nobody has
    (b"evil.example.com." + HEX.encode(), "evil", "malformed"),     # an address is not an id
    (b"127.0.0.1:9." + HEX.encode(), "127", "malformed"),
    (b"n1." + HEX.upper().encode(), "n1", "malformed"),
    (b"n1." + HEX[:31].encode(), "n1", "malformed"),
    (b"N1." + HEX.encode(), "", "malformed"),
    (b"\xff" * 40, "", "malformed"),
    (b"n1", "", "malformed"),
])
def test_forged_and_malformed_tokens_are_unknown_node(cluster, token, node, needle):
    c = cluster(n=2)
    r, resp = hello(c.ports[0], token)
    assert resp.status.code == pb.UNKNOWN_NODE, resp.status.message
    assert resp.status.node == node
    assert resp.status.address == ""
    assert needle in resp.status.message
    r.close()
    # The daemon still serves, and a forged token for a known node but a made-up secret is
    # only a MOVED (the owner then says it does not know the session).
    r, ok = hello(c.ports[0])
    assert ok.status.code == pb.OK
    r.close()
    r, resp = hello(c.ports[1], b"n1." + HEX.encode())
    assert resp.status.code == pb.UNKNOWN_SESSION
    r.close()


def test_full_node_names_a_peer_with_room(cluster):
    c = cluster(extra={0: ["--max-sessions", "1"]})
    r0, resp = hello(c.ports[0])
    assert resp.status.code == pb.OK
    info = node_info(c.ports[0]).node_info
    assert info.sessions == 1 and info.max_sessions == 1 and not info.accepting
    r, full = hello(c.ports[0])
    assert full.status.code == pb.NODE_FULL, full.status.message
    assert full.status.node in ("n1", "n2")
    i = c.ids.index(full.status.node)
    assert full.status.address == "127.0.0.1:%d" % c.ports[i]
    r.close()
    # The named peer serves it.
    r, there = hello(c.ports[i])
    assert there.status.code == pb.OK
    assert there.hello.session_token.startswith(full.status.node.encode() + b".")
    r.close()
    st = r0.call(stats=pb.Stats()).stats
    assert st.refused_full == 1 and st.redirected_full == 1
    r0.close()


def test_full_node_with_no_peer_with_room_names_none(tmp_path):
    d = Daemon("--node-id", "lone", "--max-sessions", "1")
    try:
        r, _ = hello(d.port)
        r2, full = hello(d.port)
        assert full.status.code == pb.NODE_FULL
        assert full.status.node == "" and full.status.address == ""
        assert "knows no peer with room" in full.status.message
        r.close()
        r2.close()
    finally:
        assert d.stop() == 0


def test_node_info_wants_the_auth_token(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("cluster-secret-0123456789\n")
    ports = free_ports(2)
    a = Daemon("--node-id", "a0", "--auth-token-file", str(tok), "--peers",
               "127.0.0.1:%d" % ports[1], "--peer-interval", "100ms",
               listen=("--listen", "127.0.0.1:%d" % ports[0]))
    b = Daemon("--node-id", "b0", "--auth-token-file", str(tok), "--peers",
               "127.0.0.1:%d" % ports[0], "--peer-interval", "100ms",
               listen=("--listen", "127.0.0.1:%d" % ports[1]))
    try:
        bad = node_info(ports[0], auth="wrong-secret-0123456789")
        assert bad.status.code == pb.UNAUTHENTICATED
        assert not bad.HasField("node_info")
        none = node_info(ports[0])
        assert none.status.code == pb.UNAUTHENTICATED
        # Peers poll each other with the daemon's own token, so they still see each other.
        good = wait_for("a0 to hear from b0", lambda: (lambda r: r.status.code == pb.OK and [
            p for p in r.node_info.peers if p.node_id == "b0" and p.reachable] and r)(
            node_info(ports[0], auth="cluster-secret-0123456789")))
        assert good.node_info.node_id == "a0"
        assert "cluster-secret" not in a.text() and "cluster-secret" not in b.text()
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_a_killed_peer_shows_unreachable(cluster):
    c = cluster()
    killed = c.daemons[2]
    killed.proc.send_signal(signal.SIGKILL)
    killed.proc.wait(timeout=10)

    def n2_down():
        r, _ = hello(c.ports[0])
        st = r.call(stats=pb.Stats()).stats
        r.close()
        peers = {p.node_id: p for p in st.peers}
        return not peers["n2"].reachable and peers["n2"].failures > 0 and peers["n1"].reachable
    wait_for("n0 to see n2 down", n2_down)
    # A session of n2's is still routed to n2 (its owner), which the client then cannot reach:
    # only n2's sessions are lost.
    r, moved = hello(c.ports[0], b"n2." + HEX.encode())
    assert moved.status.code == pb.MOVED and moved.status.node == "n2"
    r.close()
    os.unlink(killed.log.name)
    c.daemons.remove(killed)


def test_dns_peers_resolve_to_every_address_behind_the_name(tmp_path):
    """--peers dns:NAME:PORT (a headless Service's form) is looked up by the daemon itself:
    here "localhost", whose loopback address has a peer listening. What else the name
    resolves to (::1, where nothing listens) may show unreachable, never the one that
    answers."""
    ports = free_ports(2)
    b = Daemon("--node-id", "d1", listen=("--listen", "127.0.0.1:%d" % ports[1]))
    a = Daemon("--node-id", "d0", "--peers", "dns:localhost:%d" % ports[1],
               "--peer-interval", "100ms", listen=("--listen", "127.0.0.1:%d" % ports[0]))
    try:
        got = wait_for("d0 to hear from d1 through dns:localhost", lambda: [
            p for p in node_info(ports[0]).node_info.peers
            if p.node_id == "d1" and p.reachable])
        assert got[0].address == "127.0.0.1:%d" % ports[1]
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_metrics_carry_node_and_peers(tmp_path):
    ports = free_ports(3)
    a = Daemon("--node-id", "m0", "--metrics-listen", "127.0.0.1:%d" % ports[2], "--peers",
               "127.0.0.1:%d" % ports[1], "--peer-interval", "100ms",
               listen=("--listen", "127.0.0.1:%d" % ports[0]))
    b = Daemon("--node-id", "m1", listen=("--listen", "127.0.0.1:%d" % ports[1]))
    try:
        def page():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ports[2],
                                        timeout=5) as f:
                text = f.read().decode()
            return text if 'peer_node="m1"} 1' in text else None
        text = wait_for("m0's /metrics to show m1 up", page)
        assert 'tensord_node_info{node="m0",advertise=""} 1' in text
        assert 'tensord_peer_up{peer="127.0.0.1:%d",peer_node="m1"} 1' % ports[1] in text
        assert re.search(r"^tensord_hello_moved_total 0$", text, re.M)
        assert re.search(r"^tensord_hello_refused_full_total 0$", text, re.M)
        assert "event=started node=m0" in a.text()
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_restarted_node_resumes_its_sessions(tmp_path):
    data = tmp_path / "data"
    d = Daemon("--node-id", "keep-0", "--data-dir", str(data))
    r, resp = hello(d.port)
    tok = resp.hello.session_token
    assert tok.startswith(b"keep-0.")
    made = r.call(full=pb.Full(out=7, shape=[3], value=pb.Scalar(f=2.5), dtype=pb.FLOAT64))
    assert made.status.code == pb.OK, made.status.message
    r.close()
    assert d.stop() == 0
    d = Daemon("--node-id", "keep-0", "--data-dir", str(data))
    try:
        r, again = hello(d.port, tok)
        assert again.status.code == pb.OK, again.status.message
        assert again.hello.resumed and again.hello.session_token == tok
        got = r.call(get=pb.Get(handle=7))
        assert got.status.code == pb.OK
        assert got.tensor.shape == [3]
        assert struct.unpack("<3d", r.data) == (2.5, 2.5, 2.5)
        r.close()
    finally:
        assert d.stop() == 0
    # Renamed, the node does not own the restored session's token any more.
    d = Daemon("--node-id", "other-0", "--data-dir", str(data))
    try:
        r, resp = hello(d.port, tok)
        assert resp.status.code == pb.UNKNOWN_NODE and resp.status.node == "keep-0"
        r.close()
        assert re.search(r"event=node_id_changed node=other-0 kept=keep-0", d.text())
    finally:
        assert d.stop() == 0


def test_node_id_is_kept_in_the_data_dir(tmp_path):
    data = tmp_path / "data"
    d = Daemon("--data-dir", str(data))
    try:
        _, resp = hello(d.port)
        first = resp.hello.node_id
    finally:
        assert d.stop() == 0
    path = data / "node-id"
    assert path.read_text().strip() == first
    assert (path.stat().st_mode & 0o777) == 0o600
    # The hostname of this test machine is no StatefulSet pod's, so the id is a random one.
    if not re.fullmatch(r"[a-z0-9-]+-[0-9]+", socket.gethostname()):
        assert re.fullmatch(r"n-[0-9a-f]{10}", first)
    d = Daemon("--data-dir", str(data))
    try:
        _, resp = hello(d.port)
        assert resp.hello.node_id == first
    finally:
        assert d.stop() == 0
    path.write_text("Not A Label\n")
    bad = subprocess.run([BINARY, "--listen", "127.0.0.1:0", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "node-id" in bad.stderr and "does not hold a node id" in bad.stderr


def check_config(*args, env=None):
    return subprocess.run([BINARY, "--check-config", *args], capture_output=True, text=True,
                          timeout=30, env=env)


def test_check_config_prints_the_effective_settings(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("never-printed-secret-0123\n")
    conf = tmp_path / "tensord.conf"
    conf.write_text("peers = dns:tensord-headless.default.svc:7878\nmax_sessions = 17\n")
    env = dict(os.environ, TENSORD_ADVERTISE="tensord-0.tensord-headless:7878")
    out = check_config("--config", str(conf), "--node-id", "tensord-0", "--auth-token-file",
                       str(tok), "--listen", "0.0.0.0:7878", "--peer-interval", "5s", env=env)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" = ", 1) for line in out.stdout.splitlines())
    assert lines["node-id"] == "tensord-0"
    assert lines["advertise"] == "tensord-0.tensord-headless:7878"
    assert lines["peers"] == "dns:tensord-headless.default.svc:7878"
    assert lines["peer-interval"] == "5000ms"
    assert lines["max-sessions"] == "17"
    assert lines["listen"] == "0.0.0.0:7878"
    assert lines["auth-token-file"] == str(tok)
    assert "never-printed-secret" not in out.stdout + out.stderr
    # Nothing was started or created.
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args,flag", [
    (["--node-id", "Bad_Id"], "--node-id"),
    (["--node-id", "-n0"], "--node-id"),
    (["--node-id", "x" * 64], "--node-id"),
    (["--peers", "127.0.0.1"], "--peers"),
    (["--peers", "127.0.0.1:7878,"], "--peers"),
    (["--peers", "dns:1.2.3.4:7878"], "--peers"),
    (["--peers", "host:99999"], "--peers"),
    (["--peers", ",".join("h%d:1" % i for i in range(65))], "--peers"),
    (["--advertise", "no-port"], "--advertise"),
    (["--advertise", "[::1]:0"], "--advertise"),
    (["--advertise", "a b:1"], "--advertise"),
    (["--peer-interval", "10ms"], "--peer-interval"),
    (["--listen", "0.0.0.0:7878"], "--auth-token-file"),
])
def test_check_config_refuses_bad_settings(args, flag):
    out = check_config(*args)
    assert out.returncode == 2, out.stdout
    assert flag in out.stderr
    assert out.stdout == ""


def test_check_config_reads_the_kept_node_id(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = check_config("--data-dir", str(data))
    assert out.returncode == 0
    assert not (data / "node-id").exists()  # a check creates nothing
    (data / "node-id").write_text("kept-7\n")
    out = check_config("--data-dir", str(data))
    assert out.returncode == 0
    assert "node-id = kept-7\n" in out.stdout
    (data / "node-id").write_text("-bad\n")
    out = check_config("--data-dir", str(data))
    assert out.returncode == 2 and "does not hold a node id" in out.stderr


class LyingPeer:
    """A listener that answers every NodeInfo with `answer(request_bytes) -> bytes`."""

    def __init__(self, answer):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.asked = 0
        self.stop = False
        import threading
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(0.5)
            try:
                head = conn.recv(12)
                if len(head) == 12:
                    ml, _ = HEADER.unpack(head)
                    conn.recv(ml)
                    self.asked += 1
                    conn.sendall(self.answer())
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


def answer_frame(**node_info):
    resp = pb.Response(id=1, node_info=pb.NodeInfoResult(**node_info))
    meta = resp.SerializeToString()
    return HEADER.pack(len(meta), 0) + meta


@pytest.mark.parametrize("lie", ["huge", "data", "garbage", "no-id", "bad-advertise", "self"])
def test_a_lying_peer_does_not_hurt_the_node(lie):
    answers = {
        "huge": lambda: HEADER.pack(0x7FFFFFFF, 0),
        "data": lambda: HEADER.pack(2, 1 << 40) + b"\x08\x01",
        "garbage": lambda: HEADER.pack(5, 0) + b"\xff\xff\xff\xff\x0f",
        "no-id": lambda: answer_frame(node_id="", accepting=True, max_sessions=9),
        "bad-advertise": lambda: answer_frame(node_id="liar", advertise="evil host:1",
                                              accepting=True, max_sessions=9),
        "self": lambda: answer_frame(node_id="victim", accepting=True, max_sessions=9),
    }
    liar = LyingPeer(answers[lie])
    d = Daemon("--node-id", "victim", "--max-sessions", "1", "--peers",
               "127.0.0.1:%d" % liar.port, "--peer-interval", "100ms")
    try:
        # An address that answers with our own id is asked once, then never listed again.
        wait_for("the liar to be asked", lambda: liar.asked >= (1 if lie == "self" else 2))
        r, resp = hello(d.port)
        assert resp.status.code == pb.OK
        if lie == "self":
            wait_for("the node to drop itself from its peers",
                     lambda: list(r.call(stats=pb.Stats()).stats.peers) == [])
            assert "event=peer_is_self node=victim" in d.text()
        else:
            st = r.call(stats=pb.Stats()).stats
            assert len(st.peers) == 1 and not st.peers[0].reachable
            assert st.peers[0].failures >= 1 and st.peers[0].node_id == ""
            assert "event=peer_" in d.text()
        # Full: the liar is never named as a peer with room.
        r2, full = hello(d.port)
        assert full.status.code == pb.NODE_FULL and full.status.node == ""
        r.close()
        r2.close()
    finally:
        liar.close()
        assert d.stop() == 0


@pytest.mark.parametrize("host,want", [("tensord-2", "tensord-2"), ("web", "none"),
                                       ("Tensord-2", "none"), ("db-0x", "none"),
                                       ("pod-x", "none")])
def test_a_statefulset_pod_name_is_the_default_node_id(host, want):
    """In a UTS namespace of its own (root only), the daemon sees the host name `host`."""
    probe = subprocess.run(["unshare", "-u", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a UTS namespace here: " + probe.stderr.decode().strip())
    out = subprocess.run(["unshare", "-u", "sh", "-c", 'hostname "$1" && exec "$2" --check-config',
                          "sh", host, BINARY], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "node-id = %s\n" % want in out.stdout


def test_a_peer_connection_is_kept_past_the_idle_timeout():
    """A poller that passed NodeInfo is kept like a client past Hello: --idle-timeout, which
    closes connections that never say Hello, does not cut it (it would be dialled again every
    round otherwise)."""
    ports = free_ports(2)
    a = Daemon("--node-id", "a0", "--idle-timeout", "300ms",
               listen=("--listen", "127.0.0.1:%d" % ports[0]))
    b = Daemon("--node-id", "b0", "--peers", "127.0.0.1:%d" % ports[0], "--peer-interval",
               "100ms", listen=("--listen", "127.0.0.1:%d" % ports[1]))
    try:
        wait_for("b0 to hear from a0", lambda: sees_all(ports[1], ["a0"]))
        # Ten idle timeouts later, b0 has asked about 30 times, still on its first connection.
        end = time.time() + 3.0
        while time.time() < end:
            time.sleep(0.1)
        r, _ = hello(ports[0])
        st = r.call(stats=pb.Stats()).stats
        r.close()
        assert st.connections_total == 2, st.connections_total  # b0's poller and this one
        peer = node_info(ports[1]).node_info.peers[0]
        assert peer.reachable and peer.failures == 0
        assert "idle" not in a.text()
    finally:
        assert a.stop() == 0 and b.stop() == 0
