"""The README's op list and the op table say the same thing."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_lists_every_op_and_only_ops():
    table = (ROOT / "server/core/ops.def").read_text()
    rows = re.findall(r'^OP\(\s*\w+,\s*"(\w+)",\s*-?\d+,\s*(\d)', table, re.M)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- ops:")[1].split("<!-- /ops -->")[0]
    listed = set(re.findall(r"`(\w+)`", section))
    names = {name for name, _ in rows}
    inplace = {name + "_" for name, flag in rows if flag == "1"}
    assert listed == names | inplace


def test_every_op_has_a_wire_code():
    table = (ROOT / "server/core/ops.def").read_text()
    ids = re.findall(r"^OP\(\s*(\w+),", table, re.M)
    proto = (ROOT / "proto/tensord.proto").read_text()
    for op_id in ids:
        assert re.search(r"\bOP_%s = \d+;" % op_id, proto), op_id


def python_blocks():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python\n")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_python_examples_run(daemon):
    """The README's Python section: each block runs; printed lines match their comments."""
    import os
    import subprocess
    import sys
    blocks = python_blocks()
    assert len(blocks) == 3
    env = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % daemon,
               PYTHONPATH=str(ROOT / "client" / "python"))
    run = [subprocess.run([sys.executable, "-c", b], env=env, capture_output=True, text=True,
                          timeout=300) for b in blocks]
    for r in run:
        assert r.returncode == 0, r.stderr
    expected = re.findall(r"^print\(.*\)\s+# (.*)$", blocks[0], re.M)
    assert len(expected) == 3 and run[0].stdout.splitlines() == expected
    losses = [float(line.split()[-1]) for line in run[1].stdout.splitlines()]
    assert len(losses) == 6 and losses[-1] < losses[0] * 0.5
    example = (ROOT / "client/python/examples/train_mlp.py").read_text()
    assert example.endswith(blocks[1]), "train_mlp.py and the README's loop differ"
    # the named-tensor example: its printed lines are its comments
    expected = re.findall(r"^print\(.*\)\s+# (.*)$", blocks[2], re.M)
    assert len(expected) == 3 and run[2].stdout.splitlines() == expected


def test_readme_flag_table_matches_help():
    import os
    import subprocess
    binary = os.environ.get("TENSORD_BIN", str(ROOT / "build" / "tensord"))
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    flags = set(re.findall(r"^\s+--([a-z-]+)", help_text, re.M)) - {"help", "version"}
    readme = (ROOT / "README.md").read_text()
    table = readme.split("\n## Limits and flags\n")[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `--([a-z-]+)", table, re.M))
    assert listed == flags


def test_readme_tensorctl_session_replays(daemon, tmp_path):
    """The README's recorded tensorctl session, typed again: the same output line for line
    (an error's position is counted from the start of the script here, so only its message is
    compared)."""
    import os
    import subprocess
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## tensorctl")[1].split("\n## ")[0]
    transcript = section.split("```\n$ tensorctl\n")[1].split("```")[0].splitlines()[2:]
    inputs, expected = [], []
    for line in transcript:
        if line.startswith(">>> ") or line.startswith("... ") or line in (">>>", "..."):
            inputs.append(line[4:])
        else:
            expected.append(line)
    script = "\n".join(x.replace("/tmp/ab.safetensors", str(tmp_path / "ab.safetensors"))
                       for x in inputs) + "\n"
    binary = os.environ.get("TENSORCTL_BIN", str(ROOT / "build" / "tensorctl"))
    out = subprocess.run([binary, "--addr", "127.0.0.1:%d" % daemon, "--keep-going", "-q"],
                         input=script, capture_output=True, text=True, timeout=60)
    got = [g.replace(str(tmp_path / "ab.safetensors"), "/tmp/ab.safetensors")
           for g in out.stdout.splitlines()]
    assert got == [e for e in expected if not e.startswith("<stdin>:")]
    errors = [e.split(": ", 1)[1] for e in expected if e.startswith("<stdin>:")]
    assert [g.split(": ", 1)[1] for g in out.stderr.splitlines()] == errors
    assert out.returncode == 1  # a statement failed, as the transcript shows
    assert (tmp_path / "ab.safetensors").exists()


def test_readme_first_run_is_an_unmodified_pytorch_script(daemon, tmp_path):
    """The README's first example: train_torch.py as shown, run unchanged under PyTorch and
    through python -m tensord.run, both printing the output the README shows, and the
    checkpoint it saves loads in real torch."""
    import os
    import subprocess
    import sys
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## A first run: an unmodified PyTorch training script\n")[1]
    section = section.split("\n## ")[0]
    blocks = section.split("```")[1::2]  # each starts with its language tag's line
    script = next(b[len("python\n"):] for b in blocks if b.startswith("python\n"))
    shown = next(b[1:] for b in blocks if b.startswith("\n"))
    path = ROOT / "client/python/examples/train_torch.py"
    assert path.read_text() == script, "train_torch.py and the README's first example differ"
    assert "-m tensord.run client/python/examples/train_torch.py" in section
    env = dict(os.environ, TENSORD_ADDR="127.0.0.1:%d" % daemon,
               PYTHONPATH=str(ROOT / "client" / "python"))
    for argv in ([sys.executable, str(path)], [sys.executable, "-m", "tensord.run", str(path)]):
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                           cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert r.stdout == shown, (argv, r.stdout)
        import torch
        sd = torch.load(tmp_path / "model.pt")
        assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        (tmp_path / "model.pt").unlink()
