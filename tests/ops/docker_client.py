"""The client half of `make docker-test`: talks to the daemon in the container through the Python
package, as a user would.

  docker_client.py check ADDR TOKEN_FILE [METRICS_ADDR]
      - a wrong token is refused;
      - (a @ a + 1) * 0.5 for a = [[1, 2], [3, 4]] is [[4, 5.5], [8, 11.5]] (a @ a = [[7, 10],
        [15, 22]]), printed exactly as torch prints it;
      - autograd: Q = 3*x**3 - y**2 at x = 2, y = 6 gives dQ/dx = 9*x**2 = 36, dQ/dy = -2*y = -12;
      - with METRICS_ADDR, /healthz answers 200 and /metrics has samples.
  docker_client.py persist-write ADDR TOKEN_FILE STATE_FILE
      a session with w = [1.5, -2] (requires_grad, grad [2, 4] from (w*w).sum()) and
      n = arange(6).reshape(2, 3), w also saved to the file "model"; the connection is dropped
      without closing the session, and the session token and handles go to STATE_FILE.
  docker_client.py persist-read ADDR TOKEN_FILE STATE_FILE
      after a restart of the container on the same volume: the session resumes with w, its grad
      and n as they were, and "model" loads in the resumed session.
Exit status 0 when every check passes.
"""
import json
import sys
import urllib.request

import tensord


def check(addr: str, token: str, metrics: str) -> int:
    try:
        tensord.connect(addr, token="x" * len(token)).tensor([1.0])
    except Exception as e:   # refused: the Hello fails or the connection is closed
        print(f"wrong token refused: {type(e).__name__}: {e}")
    else:
        print("FAIL: a wrong token was accepted")
        return 1

    with tensord.connect(addr, token=token) as s:
        a = s.tensor([[1.0, 2.0], [3.0, 4.0]])
        r = (a @ a + 1) * 0.5
        got = r.tolist()
        want = [[4.0, 5.5], [8.0, 11.5]]
        text = repr(r)
        print(f"(a @ a + 1) * 0.5 = {got}")
        print(text)
        if got != want:
            print(f"FAIL: want {want}")
            return 1
        if text != "tensor([[ 4.0000,  5.5000],\n        [ 8.0000, 11.5000]])":
            print("FAIL: printed text differs from torch's")
            return 1
        x = s.tensor([2.0], requires_grad=True)
        y = s.tensor([6.0], requires_grad=True)
        q = 3 * x ** 3 - y ** 2
        q.backward()
        gx, gy = x.grad.tolist(), y.grad.tolist()
        print(f"dQ/dx = {gx}, dQ/dy = {gy}")
        if gx != [36.0] or gy != [-12.0]:
            print("FAIL: want [36.0] and [-12.0]")
            return 1

    if metrics:
        with urllib.request.urlopen(f"http://{metrics}/healthz", timeout=5) as resp:
            print(f"/healthz: {resp.status}")
            if resp.status != 200:
                return 1
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        samples = [ln for ln in body.splitlines() if ln and not ln.startswith("#")]
        print(f"/metrics: {len(samples)} samples")
        if not samples:
            print("FAIL: /metrics has no samples")
            return 1
    return 0


def persist_write(addr: str, token: str, state: str) -> int:
    s = tensord.connect(addr, token=token)
    w = s.tensor([1.5, -2.0], requires_grad=True)
    (w * w).sum().backward()          # d/dw sum(w*w) = 2w = [3, -4]
    n = s.tensor([0, 1, 2, 3, 4, 5]).reshape(2, 3)
    s.save("model", {"w": w})
    print(f"w.grad = {w.grad.tolist()}, n = {n.tolist()}; saved 'model'")
    with open(state, "w") as f:
        # The session token is text since scale-out ("<node id>.<32 hex>"), kept as it is.
        json.dump({"session": s.token.decode("latin-1"), "w": w._h, "n": n._h}, f)
    return 0   # exits without closing: the session outlives the connection


def persist_read(addr: str, token: str, state: str) -> int:
    with open(state) as f:
        st = json.load(f)
    r = tensord.connect(addr, token=token, resume=st["session"].encode("latin-1"))
    w, n = tensord.Tensor(r, st["w"]), tensord.Tensor(r, st["n"])
    print(f"resumed: {w!r}, grad {w.grad.tolist()}, n = {n.tolist()}")
    ok = (repr(w) == "tensor([ 1.5000, -2.0000], requires_grad=True)" and
          w.grad.tolist() == [3.0, -4.0] and n.tolist() == [[0, 1, 2], [3, 4, 5]])
    m = r.load("model")  # a session's files are its own: the resumed session finds them
    print(f"loaded 'model': {m['w']!r}")
    ok = ok and m["w"].tolist() == [1.5, -2.0] and m["w"].requires_grad
    r.close()
    if not ok:
        print("FAIL: the session or the saved file did not survive the restart")
        return 1
    return 0


def main() -> int:
    mode, addr = sys.argv[1], sys.argv[2]
    with open(sys.argv[3]) as f:
        token = f.read().strip()
    rest = sys.argv[4] if len(sys.argv) > 4 else ""
    rc = {"check": check, "persist-write": persist_write, "persist-read": persist_read}[mode](
        addr, token, rest)
    print(f"docker client {mode}: {'ok' if rc == 0 else 'FAILED'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
