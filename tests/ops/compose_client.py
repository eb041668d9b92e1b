"""The host side of the three-node compose test (tests/ops/compose_test.sh): prepares a copy of
docker/compose.yaml on free loopback ports, then talks to the three nodes through the Python
client with an address list, as a user on the host would.

  compose_client.py prepare SRC DIR TOKEN_FILE
      DIR/compose.yaml: SRC with each published host port (wire and metrics) moved to a free
      loopback port, and each node's --advertise moved with its wire port (the file's own
      structure otherwise, so the test runs what users run); DIR/secrets/tensord_token; and
      DIR/state.json with the address list.
  compose_client.py wait DIR
      every node answers /readyz, and a session can be opened through the address list.
  compose_client.py spread DIR
      three new sessions in one process, through the address list: round-robin from a random
      start puts one on each node (n0, n1, n2); each holds a tensor w ([1, 2] times the
      session's number) and is left open (its token and w's handle go to state.json).
  compose_client.py resume DIR
      each session resumed through a node that does not own it (that node's address alone):
      the client follows MOVED to the owner, Session.node names it, and w's handle finds the
      tensor made before, from a new process.
  compose_client.py lost DIR NODE
      with NODE stopped: the sessions on the other nodes still resume and compute; resuming
      NODE's session fails with an error that names NODE.
  compose_client.py metrics DIR
      each node's /metrics names its node id and shows the other two nodes up, and the MOVED
      counters together are at least the number of cross-node resumes done so far.
Exit status 0 when every check passes."""
import json
import os
import pathlib
import random
import re
import socket
import sys
import time
import urllib.request

import yaml

import tensord

WIRE, METRICS = 7878, 9090   # the ports every node listens on inside its container


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def load(d):
    return json.loads((pathlib.Path(d) / "state.json").read_text())


def save(d, st):
    (pathlib.Path(d) / "state.json").write_text(json.dumps(st, indent=1))


def prepare(src, d, token_file):
    d = pathlib.Path(d)
    doc = yaml.safe_load(pathlib.Path(src).read_text())
    names = sorted(doc["services"])
    ports = free_ports(2 * len(names))
    nodes = {}
    for i, name in enumerate(names):
        svc = doc["services"][name]
        wire, metrics = ports[2 * i], ports[2 * i + 1]
        old = {p.rsplit(":", 1)[1]: p for p in svc["ports"]}
        assert set(old) == {str(WIRE), str(METRICS)}, svc["ports"]
        old_host = old[str(WIRE)].rsplit(":", 2)[1]
        svc["ports"] = [f"127.0.0.1:{wire}:{WIRE}", f"127.0.0.1:{metrics}:{METRICS}"]
        cmd = [str(a) for a in svc["command"]]
        i_adv = cmd.index("--advertise") + 1
        assert cmd[i_adv] == f"127.0.0.1:{old_host}", cmd
        cmd[i_adv] = f"127.0.0.1:{wire}"
        svc["command"] = cmd
        svc.pop("build", None)   # the image is built once, before (make docker-test)
        nodes[name] = {"wire": f"127.0.0.1:{wire}", "metrics": f"127.0.0.1:{metrics}"}
    (d / "secrets").mkdir(mode=0o700, exist_ok=True)
    token = pathlib.Path(token_file).read_text()
    (d / "secrets" / "tensord_token").write_text(token)
    os.chmod(d / "secrets" / "tensord_token", 0o644)
    secret = doc["secrets"]["tensord_token"]["file"]
    assert secret == "./secrets/tensord_token", secret
    (d / "compose.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    save(d, {"nodes": nodes, "token": token.strip(), "sessions": [], "cross_resumes": 0})
    print("nodes: " + ", ".join(f"{n} {a['wire']}" for n, a in nodes.items()))
    return 0


def addr_list(st):
    """The nodes' host addresses, as TENSORD_ADDR lists them."""
    return ",".join(st["nodes"][n]["wire"] for n in sorted(st["nodes"]))


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def wait(d):
    st = load(d)
    deadline = time.time() + 60
    for name, a in st["nodes"].items():
        while True:
            try:
                if get(f"http://{a['metrics']}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                print(f"FAIL: {name} not ready after 60 s")
                return 1
            time.sleep(0.2)
    print("all three nodes ready")
    return 0


def spread(d):
    st = load(d)
    sessions = []
    for i in range(3):
        s = tensord.connect(addr_list(st), token=st["token"])
        w = s.tensor([1.0 * (i + 1), 2.0 * (i + 1)])
        got = (w * 2).tolist()
        print(f"session {i}: node {s.node}, (w * 2) = {got}")
        if got != [2.0 * (i + 1), 4.0 * (i + 1)]:
            print("FAIL: wrong result")
            return 1
        token = s.token if isinstance(s.token, bytes) else s.token.encode()
        sessions.append({"node": s.node, "token": token.decode("latin-1"), "i": i, "w": w._h})
        # left open: the session outlives this process
    nodes = sorted(x["node"] for x in sessions)
    if nodes != sorted(st["nodes"]):
        print(f"FAIL: three new sessions landed on {nodes}, want one on each node")
        return 1
    st["sessions"] = sessions
    save(d, st)
    return 0


def check_session(st, x, via):
    """Resumes session x, in a new process, through node `via` alone (which answers MOVED when
    it is not the owner); returns an error text, or None when it resumed on its owner with its
    tensor."""
    s = tensord.connect(st["nodes"][via]["wire"], token=st["token"],
                        resume=x["token"].encode("latin-1"))
    want = [1.0 * (x["i"] + 1), 2.0 * (x["i"] + 1)]
    w = tensord.Tensor(s, x["w"])
    got = w.tolist()
    print(f"session {x['i']} resumed through {via}: node {s.node}, w = {got}")
    if s.node != x["node"]:
        return f"resumed on {s.node}, owner is {x['node']}"
    if got != want:
        return f"w = {got}, want {want}"
    if (w + 1).tolist() != [v + 1 for v in want]:
        return "w + 1 is wrong"
    return None   # not closed: later steps resume the session again


def resume(d):
    st = load(d)
    deadline = time.time() + 60   # the nodes learn each other's addresses from their polls
    for x in st["sessions"]:
        via = random.choice([n for n in sorted(st["nodes"]) if n != x["node"]])
        while True:
            try:
                err = check_session(st, x, via)
                break
            except Exception as e:   # refused, UNKNOWN_NODE until the polls ran
                if time.time() > deadline:
                    err = f"{type(e).__name__}: {e}"
                    break
                print(f"(not yet: {e})")
                time.sleep(0.5)
        if err:
            print(f"FAIL: session {x['i']}: {err}")
            return 1
        st["cross_resumes"] += 1
    save(d, st)
    return 0


def lost(d, node):
    st = load(d)
    for x in st["sessions"]:
        via = sorted(n for n in st["nodes"] if n != node)[0]
        if x["node"] != node:
            err = check_session(st, x, via)
            if err:
                print(f"FAIL: session {x['i']} on {x['node']} with {node} down: {err}")
                return 1
            continue
        try:
            check_session(st, x, via)
        except Exception as e:   # whatever the kind, it must name the node
            print(f"session {x['i']} on the stopped node: {type(e).__name__}: {e}")
            if node not in str(e):
                print(f"FAIL: the error does not name {node}")
                return 1
        else:
            print(f"FAIL: session {x['i']} resumed while its node {node} is down")
            return 1
    return 0


def metrics(d):
    """Each node's /metrics: tensord_node_info names it, tensord_peer_up shows the other two
    up (polled every --peer-interval, 2 s: waits up to 30 s), and tensord_hello_moved_total
    over the nodes is at least the number of resumes sent through a node not the owner."""
    st = load(d)
    moved = 0.0
    for name, a in st["nodes"].items():
        others = sorted(n for n in st["nodes"] if n != name)
        deadline = time.time() + 30
        while True:
            status, text = get(f"http://{a['metrics']}/metrics")
            up = sorted(re.findall(r'^tensord_peer_up\{[^}]*peer_node="([a-z0-9-]+)"[^}]*\} 1$',
                                   text, re.M))
            if up == others or time.time() > deadline:
                break
            time.sleep(0.5)
        if status != 200 or not re.search(rf'^tensord_node_info\{{node="{name}"', text, re.M):
            print(f"FAIL: {name}'s /metrics does not carry its node id")
            return 1
        if up != others:
            print(f"FAIL: {name} sees peers {up} up, want {others}")
            return 1
        m = re.search(r"^tensord_hello_moved_total (\d+)$", text, re.M)
        if not m:
            print(f"FAIL: {name}'s /metrics has no tensord_hello_moved_total")
            return 1
        moved += int(m.group(1))
    print(f"every node names itself and sees the other two up; MOVED answered: {moved:g}, "
          f"cross-node resumes: {st['cross_resumes']}")
    if moved < st["cross_resumes"]:
        print("FAIL: fewer MOVED replies counted than resumes sent through another node")
        return 1
    return 0


def main():
    mode, rest = sys.argv[1], sys.argv[2:]
    rc = {"prepare": prepare, "wait": wait, "spread": spread, "resume": resume, "lost": lost,
          "metrics": metrics}[mode](*rest)
    print(f"compose client {mode}: {'ok' if rc == 0 else 'FAILED'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
