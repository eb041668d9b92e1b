"""tensorctl end to end: golden scripts against PyTorch, a training loop, exit statuses and
messages, round trips counted by a TCP proxy, safetensors files read back by hand and compared
with torch, and the REPL driven through tmux.

The oracle is PyTorch itself: each .tdx script is also valid Python once torch's names are in
scope, so it is run statement by statement the way Python's REPL runs it (bare expressions
echo their repr), and the text must match with "torch." written "tensord.".
"""
import ast
import builtins
import contextlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CLI_DIR = os.path.join(HERE, "..", "cli")
TENSORCTL = os.environ.get("TENSORCTL_BIN", os.path.join(HERE, "..", "..", "build", "tensorctl"))


def run(port, *args, input=None, env=None, timeout=60):
    e = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % port)
    e.pop("TENSORD_TOKEN", None)
    e.update(env or {})
    return subprocess.run([TENSORCTL, *args], input=input, capture_output=True, text=True,
                          env=e, timeout=timeout)


def torch_namespace():
    ns = {k: getattr(torch, k) for k in dir(torch)
          if not k.startswith("_") and not hasattr(builtins, k)}
    ns["bool_"] = torch.bool
    return ns


def torch_output(src):
    """What Python's REPL prints running `src` with torch's names in scope."""
    ns = torch_namespace()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for stmt in ast.parse(src).body:
            code = compile(ast.Interactive(body=[stmt]), "<tdx>", "single")
            exec(code, ns)
    return out.getvalue().replace("torch.", "tensord.")


def script(name):
    return os.path.join(CLI_DIR, name)


# ---- golden scripts ----

def test_seed_examples_match_torch(daemon):
    path = script("seed.tdx")
    r = run(daemon, path)
    assert r.returncode == 0, r.stderr
    want = torch_output(open(path).read())
    assert r.stdout == want
    assert "Q value: -12.0\nComputed dQ/da: 36.0\nComputed dQ/db: -12.0\n" in r.stdout
    assert "Dimensions [tensord.Size([2, 2]), tensord.Size([2, 2])]" in r.stdout


def test_language_matches_torch(daemon):
    path = script("language.tdx")
    r = run(daemon, path)
    assert r.returncode == 0, r.stderr
    want = torch_output(open(path).read())
    got_lines, want_lines = r.stdout.splitlines(), want.splitlines()
    for i, (g, w) in enumerate(zip(got_lines, want_lines)):
        assert g == w, "line %d differs" % (i + 1)
    assert len(got_lines) == len(want_lines)


def test_training_loop_loss_falls_like_torch(daemon):
    path = script("mlp.tdx")
    r = run(daemon, path)
    assert r.returncode == 0, r.stderr
    losses = [float(m) for m in re.findall(r"loss (\S+)", r.stdout)]
    assert len(losses) == 200
    assert losses[-1] < losses[0] / 5
    # falling: every 20-step window ends lower than it started
    for i in range(0, 180, 20):
        assert losses[i + 20] < losses[i]
    want = [float(m) for m in re.findall(r"loss (\S+)", torch_output(open(path).read()))]
    assert losses == pytest.approx(want, rel=1e-3, abs=1e-6)


# ---- errors and exit statuses ----

def test_parse_error_points_at_column(daemon, tmp_path):
    p = tmp_path / "bad.tdx"
    p.write_text("x = tensor([1, 2])\ny = (x +\n      )\nprint('never')\n")
    r = run(daemon, str(p))
    assert r.returncode == 1
    assert r.stdout == ""  # nothing runs: the whole script is parsed first, as Python does
    lines = r.stderr.splitlines()
    assert lines[0] == "%s:3:7: invalid syntax: expected an expression, found ')'" % p
    assert lines[1] == "          )"
    assert lines[2] == "          ^"


def test_server_error_stops_the_script_with_torchs_message(daemon, tmp_path):
    with pytest.raises(RuntimeError) as e:
        torch.ones(2, 3) @ torch.ones(2, 2)
    p = tmp_path / "srv.tdx"
    p.write_text("a = ones(2, 3)\nprint('before')\nc = a @ ones(2, 2)\nd = c + 1\nprint('after')\n")
    r = run(daemon, str(p))
    assert r.returncode == 1
    assert r.stdout == "before\n"
    assert r.stderr == "%s:3:7: %s\n" % (p, e.value.args[0])


def test_keep_going_reports_each_failure(daemon):
    r = run(daemon, "--keep-going", "-c",
            "a = ones(2) + ones(3)\nprint('after')\nq = nosuch\nprint(2)")
    assert r.returncode == 1
    assert r.stdout == "after\n2\n"
    err = r.stderr.splitlines()
    assert err[0].startswith("-c:1:13: The size of tensor a (2) must match the size of "
                             "tensor b (3)")
    assert err[1] == "-c:3:5: name 'nosuch' is not defined"


def test_connection_refused_exits_2():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = run(port, "-c", "print(1)")
    assert r.returncode == 2
    assert "Connection refused" in r.stderr
    assert r.stderr.startswith("tensorctl: ")


def test_usage_errors_exit_2(daemon, tmp_path):
    assert run(daemon, "--no-such-flag").returncode == 2
    r = run(daemon, str(tmp_path / "missing.tdx"))
    assert r.returncode == 2 and "No such file" in r.stderr
    assert run(daemon, "--resume", "xyz", "-c", "1").returncode == 2
    h = run(daemon, "--help")
    assert h.returncode == 0
    for flag in ("--addr", "--token", "--resume", "-c", "--json", "--keep-going", "--help"):
        assert flag in h.stdout


def test_name_error_position(daemon):
    r = run(daemon, "-c", "x = 1; print(x + y)")
    assert r.returncode == 1
    assert r.stderr == "-c:1:18: name 'y' is not defined\n"


# ---- ways in ----

def test_stdin_script_and_c(daemon):
    r = run(daemon, input="x = tensor([1.5, 2.5])\nprint(x * 2)\n")
    assert r.returncode == 0 and r.stdout == "tensor([3., 5.])\n"
    r = run(daemon, "-c", "x = arange(3); x * x")
    assert r.returncode == 0 and r.stdout == "tensor([0, 1, 4])\n"


def test_env_addr_and_flag_addr(daemon):
    r = run(daemon, "--addr", "127.0.0.1:%d" % daemon, "-c", "print(1)",
            env={"TENSORD_ADDR": "127.0.0.1:1"})
    assert r.returncode == 0 and r.stdout == "1\n"


def test_json_output(daemon):
    r = run(daemon, "--json", "-c",
            "x = tensor([[1.5, 2], [3, 4]]); print(x); x.shape; print(x.sum().item(), 'a')")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0] == {"shape": [2, 2], "dtype": "float32", "data": [[1.5, 2.0], [3.0, 4.0]]}
    assert lines[1] == [2, 2]
    assert lines[2] == [10.5, "a"]


def test_resume_keeps_the_session(daemon):
    r = run(daemon, "-c", "x = ones(3)\n:session")
    assert r.returncode == 0, r.stderr
    token = re.search(r"token\s+([0-9a-f]{32})", r.stdout).group(1)
    r2 = run(daemon, "--resume", token, "-c", ":stats")
    assert r2.returncode == 0, r2.stderr
    assert re.search(r"session_tensors\s+1\b", r2.stdout)


# ---- safetensors ----

def read_safetensors(path):
    """The format by hand: u64 LE header length, JSON header, then the byte buffer."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    buf = raw[8 + n:]
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32,
              "I64": torch.int64, "BOOL": torch.bool}
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        b, e = d["data_offsets"]
        t = torch.frombuffer(bytearray(buf[b:e]), dtype=dtypes[d["dtype"]]) if e > b else \
            torch.empty(0, dtype=dtypes[d["dtype"]])
        out[name] = t.reshape(d["shape"])
    return header, out


def write_safetensors(path, tensors):
    codes = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32",
             torch.int64: "I64", torch.bool: "BOOL"}
    header, data, off = {"__metadata__": {"by": "test"}}, b"", 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        data += b
        off += len(b)
    h = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)


def test_save_writes_safetensors_torch_can_read(daemon, tmp_path):
    f = tmp_path / "out.safetensors"
    r = run(daemon, "-c", "a = arange(6).reshape(2, 3).to(float64) / 4\n"
            "b = tensor([[1, -2], [3, 4]])\nc = tensor([True, False, True])\n"
            "d = tensor([1, 2], dtype=int32)\ne = zeros(0, 3)\n:save %s\n" % f)
    assert r.returncode == 0, r.stderr
    header, got = read_safetensors(str(f))
    assert set(got) == {"a", "b", "c", "d", "e"}
    assert torch.equal(got["a"], torch.arange(6).reshape(2, 3).to(torch.float64) / 4)
    assert torch.equal(got["b"], torch.tensor([[1, -2], [3, 4]]))
    assert torch.equal(got["c"], torch.tensor([True, False, True]))
    assert torch.equal(got["d"], torch.tensor([1, 2], dtype=torch.int32))
    assert got["e"].shape == (0, 3) and got["e"].dtype == torch.float32
    raw = open(f, "rb").read()
    assert struct.unpack("<Q", raw[:8])[0] % 8 == 0  # buffer aligned, like the reference writer
    # names chosen
    f2 = tmp_path / "some.safetensors"
    assert run(daemon, "-c", "a = ones(2)\nb = ones(3)\n:save %s b" % f2).returncode == 0
    assert set(read_safetensors(str(f2))[1]) == {"b"}


def test_load_reads_a_file_written_by_hand(daemon, tmp_path):
    f = tmp_path / "in.safetensors"
    w = torch.tensor([[0.5, -1.25], [3.0, 4.0]])
    write_safetensors(str(f), {"layer.weight": w, "idx": torch.tensor([3, 1, 2]),
                               "mask": torch.tensor([True, False])})
    r = run(daemon, "-c", ":load %s\nprint(layer_weight)\nprint(idx, mask)\n"
            "print(layer_weight.sum().item())" % f)
    assert r.returncode == 0, r.stderr
    want = "%s\n%s %s\n%s\n" % (repr(w), repr(torch.tensor([3, 1, 2])),
                                repr(torch.tensor([True, False])), w.sum().item())
    assert r.stdout.split("\n", 1)[1] == want


def test_load_refuses_a_bad_file(daemon, tmp_path):
    f = tmp_path / "bad.safetensors"
    h = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    f.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 8)
    r = run(daemon, "-c", ":load %s" % f)
    assert r.returncode == 1
    assert "need 16 bytes" in r.stderr


# ---- round trips ----

class CountingProxy:
    """Forwards one TCP connection to the daemon and counts turns: each time bytes flow from
    the server after the client last sent something, the client waited on a reply."""

    def __init__(self, port):
        self.upstream = port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.turns = 0
        self.last = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def pump(self, src, dst, direction):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                with self.lock:
                    if direction == "s2c" and self.last == "c2s":
                        self.turns += 1
                    self.last = direction
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(self):
        client, _ = self.lsock.accept()
        server = socket.create_connection(("127.0.0.1", self.upstream))
        t = threading.Thread(target=self.pump, args=(server, client, "s2c"), daemon=True)
        t.start()
        self.pump(client, server, "c2s")
        t.join(timeout=10)
        client.close()
        server.close()
        self.lsock.close()


def test_thousand_line_script_costs_few_round_trips(daemon):
    lines = ["w = ones(4, 4)", "b = zeros(4)", "acc = zeros(4, 4)"]
    for i in range(997 - 1):
        lines.append("acc = acc + (w * %d + b).relu() / %d" % (i % 7, i + 1) if i % 2 == 0
                     else "t%d = acc.sum(dim=0) - %d.5" % (i % 50, i))
    lines.append("print(acc.sum().item())")
    src = "\n".join(lines) + "\n"
    assert len(src.splitlines()) == 1000
    proxy = CountingProxy(daemon)
    r = run(proxy.port, input=src, env={"TENSORCTL_DEBUG": "1"})
    proxy.thread.join(timeout=30)
    assert r.returncode == 0, r.stderr
    # value check against torch
    acc = torch.zeros(4, 4)
    for i in range(0, 996, 2):
        acc = acc + (torch.ones(4, 4) * (i % 7) + torch.zeros(4)).relu() / (i + 1)
    assert float(r.stdout) == pytest.approx(acc.sum().item(), rel=1e-5)
    print("round trips (proxy turns) for 1,000 lines:", proxy.turns, r.stderr.strip())
    assert proxy.turns <= 30


def test_proxy_counts_waits(daemon):
    """The same proxy sees one turn per printed value when a script prints on every line."""
    src = "x = ones(2)\n" + "x = x + 1; print(x.sum().item())\n" * 40
    proxy = CountingProxy(daemon)
    r = run(proxy.port, input=src)
    proxy.thread.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(float(2 * (i + 2))) for i in range(40)]
    assert proxy.turns >= 40


# ---- the REPL, through tmux ----

class Tmux:
    def __init__(self, cmd, env, tmp):
        self.sock = "tdx-%s" % uuid.uuid4().hex[:8]
        envs = " ".join("%s=%s" % kv for kv in env.items())
        subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", "new-session", "-d", "-x",
                        "160", "-y", "50", "env %s %s; sleep 30" % (envs, cmd)], check=True,
                       cwd=tmp)

    def keys(self, *keys, literal=False):
        subprocess.run(["tmux", "-L", self.sock, "send-keys", *(["-l"] if literal else []),
                        *keys], check=True)

    def type(self, text):
        self.keys(text, literal=True)

    def pane(self):
        return subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-p", "-S", "-200"],
                              capture_output=True, text=True).stdout

    def wait(self, pred, what, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.pane()
            if pred(text):
                return text
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; pane:\n%s" % (what, self.pane()))

    def command(self):
        return subprocess.run(["tmux", "-L", self.sock, "list-panes", "-F",
                               "#{pane_current_command}"], capture_output=True,
                              text=True).stdout.strip()

    def close(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def test_repl_through_tmux(daemon, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    t = Tmux(TENSORCTL, {"HOME": str(home), "TENSORD_ADDR": "127.0.0.1:%d" % daemon,
                         "TERM": "xterm"}, str(tmp_path))
    try:
        t.wait(lambda s: ">>>" in s and "session" in s, "the banner and prompt")
        # typing
        t.type("x = tensor([1, 2])")
        t.keys("Enter")
        t.type("x * 2")
        t.keys("Enter")
        t.wait(lambda s: s.count("tensor([2, 4])") == 1, "x * 2")
        # history recall with Up
        t.keys("Up")
        t.wait(lambda s: s.rstrip().endswith(">>> x * 2"), "the recalled line")
        t.keys("Enter")
        t.wait(lambda s: s.count("tensor([2, 4])") == 2, "the recalled line's result")
        # completion of a variable name, then of a method
        t.type("my_long_variable = ones(2)")
        t.keys("Enter")
        t.type("my_lo")
        t.keys("Tab")
        t.wait(lambda s: s.rstrip().endswith(">>> my_long_variable"), "completion")
        t.type(".su")
        t.keys("Tab")  # ambiguous: the candidates are listed
        t.wait(lambda s: re.search(r"sub\s+sub_\s+sum", s), "the candidates")
        t.type("m")
        t.keys("Tab")
        t.wait(lambda s: s.rstrip().endswith(">>> my_long_variable.sum"), "method completion")
        t.type("()")
        t.keys("Enter")
        t.wait(lambda s: "tensor(2.)" in s, "the completed line's result")
        # Ctrl-C cancels the line being typed
        t.type("print('cancelled')")
        t.keys("C-c")
        t.wait(lambda s: "KeyboardInterrupt" in s, "Ctrl-C")
        t.type("print('next')")
        t.keys("Enter")
        text = t.wait(lambda s: "\nnext" in s, "the line after Ctrl-C")
        assert "\ncancelled" not in text
        # multi-line input with an open bracket, and an indented block
        t.type("y = tensor([10,")
        t.keys("Enter")
        t.wait(lambda s: s.rstrip().endswith("..."), "the continuation prompt")
        t.type("20])")
        t.keys("Enter")
        t.type("for i in range(2):")
        t.keys("Enter")
        t.type("    y += 1")
        t.keys("Enter")
        t.keys("Enter")
        t.type("y")
        t.keys("Enter")
        t.wait(lambda s: "tensor([12, 22])" in s, "multi-line results")
        # Ctrl-D quits; the history went to $HOME
        t.keys("C-d")
        deadline = time.time() + 10
        while t.command() == "tensorctl" and time.time() < deadline:
            time.sleep(0.05)
        assert t.command() != "tensorctl", "Ctrl-D did not quit"
        raw = (home / ".tensorctl_history").read_text()  # libedit's format: strvis-encoded
        hist = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw)
        assert "my_long_variable" in hist and "x * 2" in hist
    finally:
        t.close()
