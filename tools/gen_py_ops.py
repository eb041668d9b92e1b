"""tools/gen_py_ops.py — writes the Python client's op table, client/python/tensord/_ops.py,
from server/core/ops.def (through tools/opsdef.py).

Run by make (the PY_OPS rule), never by hand: the output is generated, never committed, and
rebuilt whenever ops.def or these scripts change. The table holds each op's facts as ops.def
states them (wire id, operand count, in-place form, flags, grad_fn, and torch's signature,
parsed) and nothing else; client/python/tensord binds torch's arguments with it.

    python3 tools/gen_py_ops.py client/python/tensord/_ops.py
"""
import ast
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opsdef  # noqa: E402

HEAD = '''"""tensord._ops — GENERATED from server/core/ops.def by tools/gen_py_ops.py (make);
do not edit, never committed.

OPS maps each op's torch name to its facts:
    id         the wire's OP_<id>
    nin        tensor operands (a number may stand for one); -1: a list
    inplace    whether the in-place form name_ exists
    flags      ops.def's TD_OPF_* flags, without the prefix ("VIEW", "NODIFF", ...)
    grad_fn    torch's grad_fn name, or None
    differentiable  whether the op has a backward rule
    sig        torch's signature as ops.def writes it
    params     the signature parsed, in torch's order: tuples of
               (name, field, required, default, operand, varargs, kwonly)
               field: the OpArgs field it travels in ("dims" takes an int or a list, "cast"
               casts the input first); for an operand "", "number" (a number may stand for it), "tensor" or "tensors" (a list)
    outputs    () for one tensor, else (name, when) per output, in wire order (out, out2,
               out3): `when` None, or the parameter whose value (not None, not False) asks
               for that output
    named      True: torch.return_types.<op> (.values, .indices); False: a plain tuple
"""

'''


def literal(text):
    """A default as ops.def writes it (a Python literal) -> its value; a list becomes a tuple,
    so that the table's entries are hashable."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise SystemExit("ops.def: default %r is not a Python literal" % text)
    return tuple(value) if isinstance(value, list) else value


def render(ops):
    lines = [HEAD, "OPS = {\n"]
    for op in ops:
        params = tuple((p.name, p.field, p.default is None,
                        None if p.default is None else literal(p.default),
                        p.operand, p.varargs, p.kwonly) for p in op.params)
        flags = tuple(f[len("TD_OPF_"):] for f in op.flags)
        lines.append("    %r: {\n" % op.name)
        lines.append("        \"id\": %r, \"nin\": %d, \"inplace\": %r, \"flags\": %r,\n"
                     % (op.id, op.nin, op.inplace, flags))
        lines.append("        \"grad_fn\": %r, \"differentiable\": %r, \"sig\": %r,\n"
                     % (op.grad_fn, op.differentiable, op.sig))
        lines.append("        \"params\": (\n")
        for p in params:
            lines.append("            %r,\n" % (p,))
        lines.append("        ),\n")
        lines.append("        \"outputs\": %r, \"named\": %r,\n"
                     % (tuple(tuple(o) for o in op.outputs), op.named))
        lines.append("    },\n")
    lines.append("}\n")
    return "".join(lines)


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: gen_py_ops.py OUTPUT")
    text = render(opsdef.load())
    tmp = argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, argv[1])  # make never sees a half-written module


if __name__ == "__main__":
    main(sys.argv)
