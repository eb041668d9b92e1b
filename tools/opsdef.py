"""tools/opsdef.py — reads server/core/ops.def, the one list of ops, for the generators.

The daemon expands ops.def with the C preprocessor; the clients' op tables are generated from
it by the scripts beside this one (run by make, never committed), so no op name is written by
hand anywhere else. This module only parses: it knows the row layout and the signature
notation that ops.def's header documents, and nothing about any one op.

    rows = opsdef.load()            # [Op(...), ...] in ops.def order
    rows[0].name, rows[0].params    # "add", (Param(name="input", ...), Param(name="other", ...))
"""
import os
import re
from typing import List, NamedTuple, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS_DEF = os.path.join(ROOT, "server", "core", "ops.def")

FLAGS = ("TD_OPF_VIEW", "TD_OPF_NODIFF", "TD_OPF_BW_SELF", "TD_OPF_BW_SELF_FOR_OTHER",
         "TD_OPF_BW_OUT", "TD_OPF_NO_METHOD", "TD_OPF_FUNCTIONAL", "TD_OPF_INPLACE_ONLY",
         "TD_OPF_INTERNAL", "TD_OPF_OVERLOADED", "TD_OPF_ALSO_F",
         "TD_OPF_CUSTOM", "TD_OPF_RANDOM")


class Param(NamedTuple):
    name: str             # torch's parameter name ("dim0", "input", "size")
    field: str            # the OpArgs field it travels in ("dim"); for an operand "" (a
                          # tensor), "number" (a tensor, or a Python number standing for one),
                          # or "tensor" / "tensors" (one, or a list) in an op with nin -1
    default: Optional[str]  # a Python literal as written, or None when required
    operand: bool         # a tensor operand (or a number standing for one), in wire order
    varargs: bool         # *name: gathers the remaining positional arguments
    kwonly: bool          # after a lone `*`


class Op(NamedTuple):
    id: str               # "ADD": TD_OP_ADD and the wire's OP_ADD
    name: str             # "add"
    nin: int              # operands; -1 a list
    inplace: bool         # name_ exists
    flags: Tuple[str, ...]
    grad_fn: Optional[str]
    sig: str
    params: Tuple[Param, ...]
    differentiable: bool  # has a backward rule
    outputs: Tuple["Output", ...] = ()  # after `->`; () for one plain tensor
    named: bool = False   # `-> a, b`: torch.return_types.<name>; `-> (a, b)`: a plain tuple


class Output(NamedTuple):
    name: str             # torch's field name ("values", "indices")
    when: Optional[str]   # None: always; else the parameter whose value (not None, not False)
                          # asks for it (unique's `counts?return_counts`)


def _split(s: str) -> List[str]:
    """Splits a row on the commas outside string literals."""
    out, cur, quoted = [], "", False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def parse_sig(sig: str, nin: int) -> Tuple[Param, ...]:
    """ops.def's signature notation -> Params. The first nin plain parameters are operands
    (`:number` on one: a Python number may stand for it); an op with nin -1 marks its operands
    `:tensors` (a list) or `:tensor` (one)."""
    params, kwonly, n_operands = [], False, 0
    for part in [p.strip() for p in sig.split(",") if p.strip()]:
        if part == "*":
            kwonly = True
            continue
        varargs = part.startswith("*")
        part = part.lstrip("*")
        default = None
        if "=" in part:
            part, default = part.split("=", 1)
        name, _, field = part.partition(":")
        if not re.fullmatch(r"[A-Za-z_]\w*", name) or (field and not re.fullmatch(r"\w+", field)):
            raise ValueError("bad parameter %r in signature %r" % (part, sig))
        operand = (not kwonly and not varargs and
                   ((nin >= 0 and field in ("", "number") and n_operands < nin) or
                    field in ("tensor", "tensors")))
        if operand:
            n_operands += 1
        elif field == "number":
            raise ValueError("%r in signature %r: only an operand takes :number" % (part, sig))
        params.append(Param(name, field if operand else (field or name), default, operand,
                            varargs, kwonly))
    return tuple(params)


def parse_outputs(sig: str, nin: int) -> Tuple[Tuple[Param, ...], Tuple[Output, ...], bool]:
    """A signature with its outputs: `params -> values, indices` (torch.return_types, named)
    or `params -> (a, b?flag)` (a plain tuple). An output `name?param` exists only when that
    parameter is given as neither None nor False; when one output remains, the result is that
    tensor. Returns (params, outputs, named); a signature without `->` has no outputs listed."""
    head, arrow, tail = sig.partition("->")
    if not arrow:
        return parse_sig(sig, nin), (), False
    params = parse_sig(head, nin)
    tail = tail.strip()
    named = not tail.startswith("(")
    if not named:
        if not tail.endswith(")"):
            raise ValueError("unbalanced outputs in signature %r" % sig)
        tail = tail[1:-1]
    outputs = []
    for part in [p.strip() for p in tail.split(",")]:
        name, _, when = part.partition("?")
        if not re.fullmatch(r"[A-Za-z_]\w*", name) or (
                when and when not in [p.name for p in params]):
            raise ValueError("bad output %r in signature %r" % (part, sig))
        outputs.append(Output(name, when or None))
    if len(outputs) < 2 or len(outputs) > 3:
        raise ValueError("signature %r: 2 or 3 outputs (out, out2, out3)" % sig)
    return params, tuple(outputs), named


def load(path: str = OPS_DEF) -> List[Op]:
    text = re.sub(r"/\*.*?\*/", "", open(path).read(), flags=re.S)
    ops = []
    for body in re.findall(r"^OP\((.*?)\)\s*$", text, flags=re.M | re.S):
        c = _split(" ".join(body.split("\n")))
        if len(c) != 14:
            raise ValueError("ops.def row has %d columns, not 14: %s" % (len(c), c[:2]))
        oid, name, nin, inplace, flags, gname, _hook, sig = c[:8]
        flags_t = tuple(f.strip() for f in flags.split("|") if f.strip() not in ("", "0"))
        for f in flags_t:
            if f not in FLAGS:
                raise ValueError("%s: unknown flag %s" % (oid, f))
        sig = re.sub(r'"\s*"', "", sig).strip('"')  # adjacent C literals are one string
        params, outputs, named = parse_outputs(sig, int(nin))
        ops.append(Op(oid, name.strip('"'), int(nin), inplace == "1", flags_t,
                      None if gname == "NULL" else gname.strip('"'), sig,
                      params, c[12] != "NULL", outputs, named))
    return ops


if __name__ == "__main__":
    for op in load():
        print(op.name, op.nin, op.flags, [(p.name, p.field, p.default) for p in op.params],
              op.outputs)
