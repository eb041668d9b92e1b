"""Attacks on issue 20's routing (docs/DESIGN.md, "Many daemons"), as a hostile server.

The clients remember where each node was last reached, process-wide, so that a resume goes
straight to its owner. A node id is only a name a server claims (StatefulSets name theirs
`tensord-0`, `tensord-1`, ... in every set), so what one set of servers said about "n0" must
never send a session token of another set — with its auth token — to that address. The fake
nodes are test_cluster_client's: raw frames on loopback, answering Hello as scripted.
"""
import pytest

import tensord
from conftest import Daemon
from tensord import _conn
from test_cluster_client import SECRET, FakeNode
from test_cluster_node import LyingPeer, answer_frame, hello, node_info, wait_for
from wire import pb

VICTIM_SECRET = "fedcba9876543210fedcba9876543210"
VICTIM_TOKEN = b"n0." + VICTIM_SECRET.encode()


@pytest.fixture
def nodes():
    made = []

    def make(node_id):
        f = FakeNode(node_id)
        made.append(f)
        return f
    _conn._NODES.clear()
    yield make
    for f in made:
        f.close()
    _conn._NODES.clear()


def test_a_hostile_set_naming_itself_n0_does_not_receive_another_sets_tokens(nodes):
    # A hostile pair of servers, each calling itself n0 in its HelloResult.
    evil_a, evil_b = nodes("n0"), nodes("n0")
    with tensord.connect("%s,%s" % (evil_a.addr, evil_b.addr)) as s:
        assert s.token == b"n0." + SECRET.encode()
    # Another set, whose node n0 owns the victim's session: its listed nodes redirect there.
    real_n0, front_a, front_b = nodes("n0"), nodes("n1"), nodes("n2")
    front_a.script("moved", "n0", real_n0.addr)
    front_b.script("moved", "n0", real_n0.addr)
    hellos_before = evil_a.hellos + evil_b.hellos
    _conn.Conn(addr="%s,%s" % (front_a.addr, front_b.addr), resume=VICTIM_TOKEN,
               token="victim-auth").close()
    assert VICTIM_TOKEN not in evil_a.tokens + evil_b.tokens
    assert evil_a.hellos + evil_b.hellos == hellos_before
    assert real_n0.tokens == [VICTIM_TOKEN]


def test_a_hostile_moved_does_not_poison_another_sets_resumes(nodes):
    # A hostile server answers a resume with MOVED naming n0 at a second hostile address.
    evil, sink = nodes("n5"), nodes("n0")
    evil.script("moved", "n0", sink.addr)
    other = nodes("n6")
    other.script("moved", "n0", sink.addr)
    with tensord.connect("%s,%s" % (evil.addr, other.addr), resume=b"n0." + SECRET.encode()):
        pass
    sink_before = sink.hellos
    real_n0, front_a, front_b = nodes("n0"), nodes("n1"), nodes("n2")
    front_a.script("moved", "n0", real_n0.addr)
    front_b.script("moved", "n0", real_n0.addr)
    _conn.Conn(addr="%s,%s" % (front_a.addr, front_b.addr), resume=VICTIM_TOKEN).close()
    assert VICTIM_TOKEN not in sink.tokens
    assert sink.hellos == sink_before
    assert real_n0.tokens == [VICTIM_TOKEN]


def test_the_same_list_still_goes_straight_to_the_owner(nodes):
    # The remembered address still serves the list it was learned through (no weakening).
    real_n0, front_a, front_b = nodes("n0"), nodes("n1"), nodes("n2")
    front_a.script("moved", "n0", real_n0.addr)
    front_b.script("moved", "n0", real_n0.addr)
    addr = "%s,%s" % (front_a.addr, front_b.addr)
    _conn.Conn(addr=addr, resume=VICTIM_TOKEN).close()
    assert front_a.hellos + front_b.hellos == 1
    _conn.Conn(addr=addr, resume=VICTIM_TOKEN).close()
    assert front_a.hellos + front_b.hellos == 1
    assert real_n0.tokens == [VICTIM_TOKEN, VICTIM_TOKEN]


# ---- the daemon, as a hostile or stale peer sees it ----

def _peers(port):
    return list(node_info(port).node_info.peers)


def test_moved_goes_to_the_reachable_peer_not_a_stale_one_with_the_same_id():
    """A peer that answered as p0 and went away keeps that id in its slot; once another address
    answers as p0, a resume of p0's token is sent there, not to the dead (or lying) one."""
    live = {"p": False}
    stale = LyingPeer(lambda: answer_frame(node_id="p0", advertise="127.0.0.1:1111",
                                           accepting=True, max_sessions=9))
    real = LyingPeer(lambda: answer_frame(node_id="p0", advertise="127.0.0.1:2222",
                                          accepting=True, max_sessions=9) if live["p"] else b"")
    d = Daemon("--node-id", "victim", "--peers",
               "127.0.0.1:%d,127.0.0.1:%d" % (stale.port, real.port), "--peer-interval", "100ms")
    try:
        wait_for("the first to answer as p0",
                 lambda: any(p.reachable and p.node_id == "p0" for p in _peers(d.port)))
        stale.close()  # its port refuses from now on
        wait_for("it to be seen down", lambda: not any(p.reachable for p in _peers(d.port)))
        live["p"] = True
        wait_for("the second to answer as p0",
                 lambda: any(p.reachable and p.address == "127.0.0.1:2222"
                             for p in _peers(d.port)))
        r, resp = hello(d.port, token=b"p0." + SECRET.encode())
        r.close()
        assert resp.status.code == pb.MOVED
        assert (resp.status.node, resp.status.address) == ("p0", "127.0.0.1:2222")
    finally:
        stale.close()
        real.close()
        assert d.stop() == 0


def test_a_refused_node_info_does_not_lift_the_pre_handshake_limits(tmp_path):
    """NodeInfo lifts net's pre-handshake clock only when it passed the auth check: one sent
    without (or with a wrong) token leaves the connection a nobody, closed at --idle-timeout
    and refused a data section, while a right one is kept past it like a peer's poller."""
    import socket
    import struct
    import time
    tok = tmp_path / "token"
    tok.write_text("cluster-secret-0123456789\n")
    d = Daemon("--node-id", "a0", "--auth-token-file", str(tok), "--idle-timeout", "300ms")
    header = struct.Struct(">IQ")

    def frame(req, data=b""):
        meta = req.SerializeToString()
        return header.pack(len(meta), len(data)) + meta + data

    def read_reply(s):
        head = b""
        while len(head) < 12:
            chunk = s.recv(12 - len(head))
            if not chunk:
                return None
            head += chunk
        ml, dl = header.unpack(head)
        body = b""
        while len(body) < ml + dl:
            chunk = s.recv(ml + dl - len(body))
            assert chunk
            body += chunk
        resp = pb.Response()
        resp.ParseFromString(body[:ml])
        return resp

    def closed_within(s, seconds):
        s.settimeout(seconds)
        try:
            while True:
                if not s.recv(4096):
                    return True
        except socket.timeout:
            return False
    try:
        for auth in ("", "wrong-secret-0123456789"):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.sendall(frame(pb.Request(id=1, node_info=pb.NodeInfo(auth_token=auth))))
            assert read_reply(s).status.code == pb.UNAUTHENTICATED
            t0 = time.time()
            assert closed_within(s, 10), "a refused NodeInfo kept its connection"
            assert time.time() - t0 < 5
            s.close()
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(frame(pb.Request(id=1, node_info=pb.NodeInfo(auth_token="wrong"))))
        assert read_reply(s).status.code == pb.UNAUTHENTICATED
        s.sendall(frame(pb.Request(id=2, ping=pb.Ping()), b"x" * 64))
        resp = read_reply(s)
        assert resp is None or resp.status.code != pb.OK  # the data section is refused
        s.close()
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(frame(pb.Request(id=1, node_info=pb.NodeInfo(
            auth_token="cluster-secret-0123456789"))))
        assert read_reply(s).status.code == pb.OK
        assert not closed_within(s, 1.2)  # four idle timeouts: kept, as a poller is
        s.close()
        r, resp = hello(d.port, auth="cluster-secret-0123456789")
        assert resp.status.code == pb.OK  # serving on
        r.close()
    finally:
        assert d.stop() == 0


# ---- names in snapshots ----

def test_names_of_one_tensor_no_handle_holds_are_one_tensor_after_a_restart(tmp_path):
    """Two names bound to one tensor that no handle holds stay one tensor across a restart (a
    dict holding a tensor under two keys: an in-place change through one shows in the other),
    and the snapshot keeps its bytes once, not once per name (else 1,000 names of one 1 MB
    tensor would write a GB)."""
    import gc
    import glob
    import os
    import torch
    data_dir = str(tmp_path / "data")
    d = Daemon("--data-dir", data_dir)
    try:
        s1 = tensord.connect("127.0.0.1:%d" % d.port)

        def bind():  # its handle's only Python reference dies with this frame
            big = s1.zeros(64 * 1024)  # 256 KiB of float32
            for k in range(40):
                s1["alias%d" % k] = big
        bind()
        gc.collect()
        s1.synchronize()  # the collected handle is freed with the next request
        s1.synchronize()
        assert s1.stats().session_tensors == 0  # only the names hold it
        token = s1.token
        s1._c.close()
    finally:
        assert d.stop() == 0
    snaps = glob.glob(os.path.join(data_dir, "**", "*.safetensors"), recursive=True)
    assert snaps, "no snapshot written"
    assert max(os.path.getsize(p) for p in snaps) < 2 * 256 * 1024  # once, not 40 times
    d = Daemon("--data-dir", data_dir)
    try:
        r = tensord.connect("127.0.0.1:%d" % d.port, resume=token)
        t = {}  # the same steps on a dict of torch tensors
        tbig = torch.zeros(64 * 1024)
        for k in range(40):
            t["alias%d" % k] = tbig
        t["alias0"].add_(1)
        with r.no_grad():
            r["alias0"].add_(1)
        assert r["alias39"][:3].tolist() == t["alias39"][:3].tolist() == [1.0, 1.0, 1.0]
        r.close()
    finally:
        assert d.stop() == 0
