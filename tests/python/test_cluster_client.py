"""The clients across many daemons (issue 20; docs/DESIGN.md, "Many daemons").

Two kinds of peer. Fake nodes written here (raw frames: a header and a protobuf Response) answer
each Hello as a test scripts it: a session, MOVED or NODE_FULL naming a node and an address. So a
redirect loop, a hostile MOVED and a full node are exact, and "refused without dialling" is a
fake node that counted no connection. Then real daemons, three of them peered on loopback ports
picked by probing: placement over the list, resume through any node, a killed node, a restarted
node, a full node, tensorctl and libtensord (tensorctl is built on it), and the load generator
with 500 connections across the three.

Every test runs on whichever client path is active (the C fast path, or TENSORD_PURE_PYTHON=1):
the routing is the same code in both, and the replies it reads are Hellos.
"""
import os
import re
import resource
import socket
import subprocess
import threading
import time

import pytest

import tensord
import wire
from tensord import _conn
from wire import pb
from conftest import BINARY, Daemon

TENSORCTL = os.environ.get("TENSORCTL_BIN") or os.path.join(os.path.dirname(BINARY),
                                                            "tensorctl")
LOADGEN = os.path.join(os.path.dirname(BINARY), "tests", "load", "loadgen")
HEADER = wire.HEADER  # a frame's u32 protobuf length and u64 data length, big-endian
SECRET = "0123456789abcdef0123456789abcdef"


# ---- fake nodes ----

class FakeNode:
    """A loopback listener that answers Hello as scripted (`mode`: "session", "moved",
    "full"), and any later request with a bare OK; counts connections and Hellos."""

    def __init__(self, node_id):
        self.id = node_id
        self.mode = "session"
        self.st_node = ""
        self.st_addr = ""
        self.accepts = 0
        self.hellos = 0
        self.tokens = []  # each Hello's session_token
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.conns = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.accepts += 1
            self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    @staticmethod
    def _read(s, n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b

    def _serve(self, s):
        try:
            while True:
                ml, dl = HEADER.unpack(self._read(s, 12))
                req = pb.Request()
                req.ParseFromString(self._read(s, ml))
                self._read(s, dl)
                resp = pb.Response()
                resp.id = req.id
                if req.WhichOneof("body") == "hello":
                    self.hellos += 1
                    self.tokens.append(req.hello.session_token)
                    self._hello(req, resp)
                meta = resp.SerializeToString()
                s.sendall(HEADER.pack(len(meta), 0) + meta)
        except (EOFError, OSError):
            s.close()

    def _hello(self, req, resp):
        if self.mode == "session":
            resp.hello.session_token = ("%s.%s" % (self.id, SECRET)).encode()
            resp.hello.version = 1
            resp.hello.node_id = self.id
            resp.hello.resumed = bool(req.hello.session_token)
            return
        resp.status.code = {"moved": pb.MOVED, "full": pb.NODE_FULL,
                            "unknown": pb.UNKNOWN_SESSION}[self.mode]
        resp.status.message = "scripted %s" % self.mode
        resp.status.node = self.st_node
        resp.status.address = self.st_addr

    def script(self, mode, node="", addr=""):
        self.mode, self.st_node, self.st_addr = mode, node, addr

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes accept(); the port refuses from now
        except OSError:
            pass
        self.lsock.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def fakes():
    made = []

    def make(n):
        nodes = [FakeNode("n%d" % i) for i in range(n)]
        made.extend(nodes)
        return nodes
    _conn._NODES.clear()
    yield make
    for f in made:
        f.close()
    _conn._NODES.clear()


TOKEN_N0 = b"n0." + SECRET.encode()


def test_moved_loop_stops_after_the_hop_limit_naming_the_chain(fakes):
    a, b = fakes(2)
    a.script("moved", "n1", b.addr)
    b.script("moved", "n0", a.addr)
    with pytest.raises(tensord.TensorError) as e:
        tensord.connect(a.addr, resume=TOKEN_N0)
    assert e.value.code == pb.MOVED
    assert str(e.value) == ("gave up after 5 redirects resuming the session: "
                            "%s -> n1 -> n0 -> n1 -> n0 -> n1 -> n0" % a.addr)
    assert (a.hellos, b.hellos) == (3, 3)  # the first Hello and five redirects
    assert b.tokens == [TOKEN_N0] * 3  # the token goes as its ASCII text


def test_moved_to_itself_stops_too(fakes):
    a, = fakes(1)
    a.script("moved", "n0", a.addr)
    with pytest.raises(tensord.TensorError, match=r"-> n0 -> n0 -> n0 -> n0 -> n0$"):
        tensord.connect(a.addr, resume=TOKEN_N0)
    assert a.hellos == 6


@pytest.mark.parametrize("node,addr", [
    ("Bad_Node", "B"),            # not a DNS label
    ("", "B"),                    # no node
    ("n1", ""),                   # no address
    ("n1", "127.0.0.1"),          # no port
    ("n1", "127.0.0.1:0"),
    ("n1", "127.0.0.1:65536"),
    ("n1", "::1:7878"),           # IPv6 needs brackets
    ("n1", "unix:/tmp/x"),        # only host:port
    ("n1", "a" * 280 + ":7878"),  # too long
    ("n1", "host name:7878"),
    ("n1", "127.0.0.1:7878/x"),
    ("n" * 64, "B"),              # a label of 64
    ("-n1", "B"),                 # a DNS label neither starts
    ("n1-", "B"),                 # ... nor ends with '-'
])
def test_a_malformed_moved_is_refused_without_dialling(fakes, node, addr):
    a, b = fakes(2)
    a.script("moved", node, b.addr if addr == "B" else addr)
    with pytest.raises(_conn.ProtocolError, match="not followed"):
        tensord.connect(a.addr, resume=TOKEN_N0)
    assert b.accepts == 0


def test_an_unreachable_owner_is_named_with_its_address(fakes):
    a, b = fakes(2)
    a.script("moved", "n1", b.addr)
    b.close()  # its port refuses now
    with pytest.raises(ConnectionError, match=r"^node n1 at %s is unreachable: " % b.addr):
        tensord.connect(a.addr, resume=TOKEN_N0)


def test_resume_remembers_where_the_owner_was_reached(fakes):
    a, b, c = fakes(3)
    a.script("moved", "n2", c.addr)
    b.script("moved", "n2", c.addr)
    tok = b"n2." + SECRET.encode()
    addr = "%s,%s" % (a.addr, b.addr)
    _conn.Conn(addr=addr, resume=tok).close()
    assert a.hellos + b.hellos == 1  # one listed node asked; it answered MOVED
    _conn.Conn(addr=addr, resume=tok).close()
    assert (a.hellos + b.hellos, c.hellos) == (1, 2)  # straight to n2
    _conn.Conn(addr=a.addr, resume=tok).close()  # one address: asked as told
    assert c.hellos == 3 and a.hellos + b.hellos == 2


def test_node_full_naming_a_peer_is_followed(fakes):
    a, b, c = fakes(3)
    a.script("full", "n2", c.addr)
    with tensord.connect(a.addr) as s:
        assert s.node == "n2"
        assert s.token == b"n2." + SECRET.encode()
    assert b.accepts == 0


def test_node_full_without_a_peer_passes_the_turn_on(fakes):
    a, b, c = fakes(3)
    a.script("full")
    b.script("full")
    addr = ",".join(f.addr for f in (a, b, c))
    for _ in range(3):  # whichever entry the turn starts at
        with tensord.connect(addr) as s:
            assert s.node == "n2"
    c.script("full")
    with pytest.raises(tensord.TensorError) as e:
        tensord.connect(addr)
    assert e.value.code == pb.NODE_FULL
    for f in (a, b, c):
        assert "%s: scripted full" % f.addr in str(e.value)


def test_an_unreachable_entry_passes_the_turn_on(fakes):
    a, b = fakes(2)
    a.close()
    addr = "%s,%s" % (a.addr, b.addr)
    for _ in range(2):
        s = _conn.Conn(addr=addr)
        assert s.node == "n1"
        s.close()
    b.close()
    with pytest.raises(ConnectionError, match="^no node opened a new session: ") as e:
        _conn.Conn(addr=addr)
    for f in (a, b):  # each entry's failure, in the order they were tried
        assert "%s: [Errno 111] Connection refused" % f.addr in str(e.value)


def test_new_sessions_go_round_robin(fakes):
    nodes = fakes(3)
    addr = ",".join(f.addr for f in nodes)
    seen = []
    for _ in range(9):
        c = _conn.Conn(addr=addr)
        seen.append(int(c.node[1:]))
        c.close()
    assert all(seen[i + 1] == (seen[i] + 1) % 3 for i in range(8)), seen
    assert [f.hellos for f in nodes] == [3, 3, 3]


@pytest.mark.parametrize("bad", ["localhost", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:x",
                                 "a,,b", "127.0.0.1:1,", "::1:7878", "dns:", "dns:[::1]:1",
                                 "dns:localhost", "host name:1", "127.0.0.1:99999"])
def test_bad_address_lists_are_refused(bad):
    with pytest.raises(ValueError, match="HOST:PORT|dns:NAME:PORT|no address"):
        _conn.parse_addrs(bad)


def test_address_lists_are_bounded_and_dns_resolves(fakes):
    a, = fakes(1)
    port = int(a.addr.rsplit(":", 1)[1])
    many = ["127.0.0.%d:%d" % (i + 1, port) for i in range(64)]
    assert len(_conn.parse_addrs(",".join(many))) == 64
    assert len(_conn.parse_addrs(",".join(many + many))) == 64  # duplicates dropped
    with pytest.raises(ValueError, match="more than 64"):
        _conn.parse_addrs(",".join(many + ["127.0.1.1:%d" % port]))
    with pytest.raises(ValueError, match="too long"):
        _conn.parse_addrs("a" * 20000)
    got = _conn.parse_addrs("dns:localhost:%d" % port)
    assert ("127.0.0.1:%d" % port) in [g[0] for g in got]
    with tensord.connect("dns:localhost:%d" % port) as s:
        assert s.node == "n0"


def test_token_forms(fakes):
    a, = fakes(1)
    for bad in ["n0", "n0.0123", "N0." + SECRET, "n0." + SECRET.upper(), "." + SECRET,
                "n_0." + SECRET, "-n0." + SECRET, "n0-." + SECRET, SECRET[:-1] + "x", b"n0." + SECRET.encode() + b"\0",
                b"x" * 15]:
        with pytest.raises(ValueError, match="malformed session token"):
            tensord.connect(a.addr, resume=bad)
    assert a.accepts == 0
    # str or bytes of the new form go as they are; 32 hex digits (a token from before
    # scale-out, as tensorctl printed it) as their 16 bytes
    for tok in ("n0." + SECRET, b"n0." + SECRET.encode()):
        with tensord.connect(a.addr, resume=tok) as s:
            assert s.node == "n0"
    with tensord.connect(a.addr, resume="00112233445566778899AABBCCDDEEFF"):
        pass
    assert a.tokens[-3:] == [TOKEN_N0, TOKEN_N0, bytes.fromhex("00112233445566778899aabbccddeeff")]


# ---- real daemons ----

def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    """n daemons n0..n{n-1} on probed loopback ports, each peered with the others."""

    def __init__(self, n=3, extra=None, data_dirs=None):
        self.ports = free_ports(n)
        self.addrs = ["127.0.0.1:%d" % p for p in self.ports]
        self.extra = extra or {}
        self.data_dirs = data_dirs or {}
        self.nodes = [None] * n
        for i in range(n):
            self.start(i)
        self.wait_peers()

    def args(self, i):
        a = ["--node-id", "n%d" % i, "--peers",
             ",".join(x for j, x in enumerate(self.addrs) if j != i),
             "--peer-interval", "100ms", "--max-connections", "2000",
             *self.extra.get(i, [])]
        if i in self.data_dirs:
            a += ["--data-dir", str(self.data_dirs[i])]
        return a

    def start(self, i):
        d = Daemon(*self.args(i), listen=("--listen", self.addrs[i]))
        assert d.port == self.ports[i], d.text()
        self.nodes[i] = d

    def wait_peers(self, live=None):
        """Until every live node has seen every other live one answer its NodeInfo."""
        live = [i for i in range(len(self.nodes)) if live is None or i in live]
        deadline = time.time() + 10
        while True:
            ok = True
            for i in live:
                c = _conn.Conn(self.ports[i])
                req = pb.Request()
                req.stats.SetInParent()
                st = c.call(req).stats
                req = pb.Request()
                req.close_session.SetInParent()
                c.call(req)
                c.close()
                seen = {p.node_id for p in st.peers if p.reachable}
                ok = ok and {"n%d" % j for j in live if j != i} <= seen
            if ok:
                return
            assert time.time() < deadline, "the peers did not see each other in 10 s"
            time.sleep(0.1)

    @property
    def addr(self):
        return ",".join(self.addrs)

    def kill(self, i):
        self.nodes[i].proc.kill()
        self.nodes[i].proc.wait(timeout=10)
        os.unlink(self.nodes[i].log.name)
        self.nodes[i] = None

    def stop(self, i):
        code = self.nodes[i].stop()
        self.nodes[i] = None
        return code

    def close(self):
        for i, d in enumerate(self.nodes):
            if d is not None:
                assert d.stop() == 0, "n%d did not exit cleanly" % i


@pytest.fixture
def cluster_factory():
    made = []

    def make(*a, **kw):
        c = Cluster(*a, **kw)
        made.append(c)
        return c
    _conn._NODES.clear()
    yield make
    for c in made:
        c.close()
    _conn._NODES.clear()


def test_sessions_spread_over_three_nodes_round_robin(cluster_factory):
    cl = cluster_factory()
    ss = [tensord.connect(cl.addr) for _ in range(6)]
    nodes = [int(s.node[1:]) for s in ss]
    assert all(nodes[i + 1] == (nodes[i] + 1) % 3 for i in range(5)), nodes
    for s in ss:
        assert s.token.startswith(s.node.encode() + b".")
        t = s.tensor([1.0, 2.0]) * 3
        assert t.tolist() == [3.0, 6.0]
        s.close()


def test_resume_through_any_node_reaches_the_owner(cluster_factory):
    cl = cluster_factory()
    owners = [tensord.connect(cl.addrs[i]) for i in range(3)]
    kept = [s.tensor([float(i), 10.0 + i]) for i, s in enumerate(owners)]
    for i, s in enumerate(owners):
        for j in range(3):
            _conn._NODES.clear()  # nothing remembered: node j must answer MOVED
            r = tensord.connect(cl.addrs[j], resume=s.token.decode())
            assert r.node == "n%d" % i and r._c.address == cl.addrs[i]
            assert r._c.token == s.token
            r._c.close()
        assert kept[i].tolist() == [float(i), 10.0 + i]
    # tensorctl (libtensord) follows MOVED too, and names the owner
    for i in range(3):
        j = (i + 1) % 3
        r = subprocess.run([TENSORCTL, "--addr", cl.addrs[j], "--resume",
                            owners[i].token.decode(), "-c", ":session\n:stats"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert re.search(r"^node\s+n%d$" % i, r.stdout, re.M), r.stdout
        assert re.search(r"^server\s+%s " % re.escape(cl.addrs[i]), r.stdout, re.M), r.stdout
        assert re.search(r"session_tensors\s+1\b", r.stdout), r.stdout
    for s in owners:
        s.close()


def test_resume_through_any_node_finds_its_tensors_by_name(cluster_factory):
    """The issue's "a resume through any node reaches the owner, and finds its tensors by
    name": names set on each node are read back through every other node, by Python (a
    fresh connection, nothing remembered) and by tensorctl, whose --resume turns them into
    variables."""
    import torch
    cl = cluster_factory()
    tokens = []
    for i in range(3):
        s = tensord.connect(cl.addrs[i])
        assert s.node == "n%d" % i
        s["w"] = s.tensor([float(i), 10.0 + i])
        s["b%d" % i] = s.tensor([i, 2 * i])
        s.synchronize()
        tokens.append(s.token.decode())
        s._c.close()  # the connection only: the session stays on its node
    for i in range(3):
        for j in range(3):
            if j == i:
                continue
            _conn._NODES.clear()  # nothing remembered: node j must answer MOVED
            r = tensord.connect(cl.addrs[j], resume=tokens[i])
            assert r.node == "n%d" % i and r._c.address == cl.addrs[i]
            assert sorted(r.keys()) == sorted(["w", "b%d" % i])
            assert r["w"].tolist() == [float(i), 10.0 + i]
            assert r["b%d" % i].tolist() == [i, 2 * i]
            r._c.close()
        # the whole list, as a client given TENSORD_ADDR would be
        _conn._NODES.clear()
        r = tensord.connect(cl.addr, resume=tokens[i])
        assert r.node == "n%d" % i and r["w"].tolist() == [float(i), 10.0 + i]
        r._c.close()
    for i in range(3):
        j = (i + 2) % 3
        r = subprocess.run([TENSORCTL, "--addr", cl.addrs[j], "--resume", tokens[i], "-c",
                            "print(w * 2)\nprint(b%d)" % i],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [repr(torch.tensor([float(i), 10.0 + i]) * 2),
                                         repr(torch.tensor([i, 2 * i]))], r.stdout
    for t in tokens:
        tensord.connect(cl.addr, resume=t).close()


def test_tensord_addr_takes_a_list(cluster_factory, monkeypatch):
    """TENSORD_ADDR=a,b,c is the address list for connect() and tensorctl alike: new sessions
    spread round-robin over it (the Python client's counter, tensorctl's own per process)."""
    cl = cluster_factory()
    monkeypatch.setenv("TENSORD_ADDR", cl.addr)
    ss = [tensord.connect() for _ in range(3)]
    assert sorted(s.node for s in ss) == ["n0", "n1", "n2"]
    for s in ss:
        s.close()
    seen = set()
    for _ in range(12):  # each run starts at a random entry: all three show up soon
        r = subprocess.run([TENSORCTL, "-c", ":session"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        seen.add(re.search(r"^node\s+(n\d)$", r.stdout, re.M).group(1))
        if len(seen) == 3:
            break
    assert len(seen) >= 2, seen


def test_tensorctl_passes_over_unreachable_entries(cluster_factory):
    cl = cluster_factory()
    dead = ["127.0.0.1:%d" % p for p in free_ports(2)]  # nothing listens there
    for i in range(3):
        addr = ",".join(dead + [cl.addrs[i]])
        r = subprocess.run([TENSORCTL, "--addr", addr, "-c", ":session"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert re.search(r"^node\s+n%d$" % i, r.stdout, re.M), r.stdout
    r = subprocess.run([TENSORCTL, "--addr", ",".join(dead), "-c", "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("tensorctl: no node opened a new session: ")
    for a in dead:
        assert "cannot connect to %s: Connection refused" % a in r.stderr


def test_a_killed_node_costs_only_its_sessions(cluster_factory):
    cl = cluster_factory()
    ss = [tensord.connect(cl.addr) for _ in range(3)]
    ts = [s.tensor([1.0, 2.0, 3.0]) for s in ss]
    victim = next(s for s in ss if s.node == "n1")
    cl.kill(1)
    with pytest.raises(ConnectionError, match=r"node n1 at %s is unreachable: "
                       % re.escape(cl.addrs[1])):
        (ts[ss.index(victim)] * 2).tolist()
    for s, t in zip(ss, ts):
        if s is not victim:
            assert (t * 2).tolist() == [2.0, 4.0, 6.0]
            assert s._c.reconnects == 0
    # new sessions avoid the dead node
    for _ in range(4):
        with tensord.connect(cl.addr) as s:
            assert s.node in ("n0", "n2")
    for s in ss:
        if s is not victim:
            s.close()


def test_a_restarted_node_restores_its_sessions(cluster_factory, tmp_path):
    dirs = {i: tmp_path / ("n%d" % i) for i in range(3)}
    for d in dirs.values():
        d.mkdir()
    cl = cluster_factory(data_dirs=dirs)
    ss = [tensord.connect(cl.addr) for _ in range(3)]
    ts = [s.tensor([float(k), 2.0]) for k, s in enumerate(ss)]
    for t in ts:
        t.tolist()  # they exist on the server before the restart
    owner = next(k for k, s in enumerate(ss) if s.node == "n2")
    assert cl.stop(2) == 0  # SIGTERM: snapshots its sessions
    cl.start(2)             # same --node-id, --data-dir and port
    assert (ts[owner] + 1).tolist() == [owner + 1.0, 3.0]
    assert ss[owner]._c.reconnects == 1 and ss[owner].node == "n2"
    # and a fresh client resumes it through another node
    cl.wait_peers()
    _conn._NODES.clear()
    r = tensord.connect(cl.addrs[0], resume=ss[owner].token)
    assert r.node == "n2"
    r._c.close()
    for s in ss:
        s.close()


def test_a_full_node_sends_new_sessions_elsewhere(cluster_factory):
    cl = cluster_factory(extra={0: ["--max-sessions", "1"]})  # the peers have been heard
    first = tensord.connect(cl.addrs[0])
    assert first.node == "n0"
    others = [tensord.connect(cl.addrs[0]) for _ in range(3)]
    assert all(s.node in ("n1", "n2") for s in others), [s.node for s in others]
    r = subprocess.run([TENSORCTL, "--addr", cl.addrs[0], "-c", ":session"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^node\s+n[12]$", r.stdout, re.M), r.stdout
    for s in [first] + others:
        s.close()


def test_loadgen_500_connections_across_three_nodes(cluster_factory):
    if not os.path.exists(LOADGEN):
        pytest.skip("loadgen not built (make %s)" % LOADGEN)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip("RLIMIT_NOFILE hard limit %d is under %d" % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the daemons inherit it
    try:
        cl = cluster_factory()
        before = [len(re.findall(r"event=session_opened", d.text())) for d in cl.nodes]
        r = subprocess.run([LOADGEN, "--addr", cl.addr, "--connections", "500",
                            "--sessions", "60", "--seconds", "3", "--heavy-rate", "0"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.search(r"requests (\d+) .* errors (\d+)", r.stdout)
        assert m and int(m.group(1)) > 0 and int(m.group(2)) == 0, r.stdout
        # the 60 sessions were placed round-robin: 20 on each node
        opened = [len(re.findall(r"event=session_opened", d.text())) - b
                  for d, b in zip(cl.nodes, before)]
        assert opened == [20, 20, 20], opened
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
