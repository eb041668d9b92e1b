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
