"""One source of truth per op (issue 15): server/core/ops.def lists the ops, and no client source
lists op names by hand. The clients' op tables are generated from ops.def (tools/gen_py_ops.py,
tools/gen_cli_ops.py); a hand-written list of op names in a client is a second list that a new
ops.def row would not reach.

Scanned: client/python/tensord/**/*.py, client/cli/*.c and *.h, client/c/*.c, less generated
files (those whose head says "do not edit": tensord_pb2.py, _ops.py). Flagged: a list of op
names, or a table keyed by them —
  - Python: a list, tuple or set literal, a dict literal's keys, or a chain of comparisons
    joined by and/or (op == "std" or op == "var"), naming two or more ops;
  - C: an initializer `= { ... }` (an array, or an array of structs: nested braces count)
    naming two or more ops.
A mapping from something else to ops is not a list of ops (a dict's values, C's designated
`[TDX_OP_ADD] = "add"`: Python's operators, torch's aliases), nor is one comparison
(`op == "norm"`), nor a call (tensord_op(c, "mul", ...)).
"Naming an op" is a string literal equal to an op's name or its in-place form (add_), from
tools/opsdef.py. Some op names are also ordinary words of the same code: a signature's
parameter or OpArgs field ("min", "max", "mean", "std", "to") or a Python builtin ("abs",
"round", "all"); a literal whose op names are all such words is not flagged (("min", "max") is
OpArgs' two scalar fields, not a list of ops).
Needs no daemon.
"""
import ast
import builtins
import glob
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import opsdef  # noqa: E402

OPS = opsdef.load()
NAMES = {op.name for op in OPS} | {op.name + "_" for op in OPS if op.inplace}
SIG_WORDS = {w for op in OPS for p in op.params for w in (p.name, p.field)}
AMBIGUOUS = NAMES & (SIG_WORDS | set(dir(builtins)))


def op_names(strings):
    """The op names among strings when they make a hand-written list (see the docstring)."""
    names = set(strings) & NAMES
    return sorted(names) if len(names) >= 2 and names - AMBIGUOUS else []


# --- Python ---
def _str_elts(nodes):
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def python_findings(text, where="<string>"):
    out = []
    for node in ast.walk(ast.parse(text, where)):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            strings = _str_elts(node.elts)
        elif isinstance(node, ast.Dict):
            strings = _str_elts([k for k in node.keys if k is not None])
        elif isinstance(node, ast.BoolOp):  # op == "sum" or op == "mean" ...
            strings = _str_elts([c for v in node.values if isinstance(v, ast.Compare)
                                 for c in [v.left] + v.comparators])
        else:
            continue
        names = op_names(strings)
        if names:
            out.append("%s:%d: %s" % (where, node.lineno, ", ".join(names)))
    return out


# --- C ---
_C_TOKEN = re.compile(r'"((?:[^"\\\n]|\\.)*)"'       # a string literal
                      r"|'(?:[^'\\\n]|\\.)*'"          # a character literal
                      r"|/\*.*?\*/|//[^\n]*"           # comments
                      r"|(?<![=!<>+\-*/%&|^])(=\s*\{)"  # an initializer opens
                      r"|([{}])", re.S)
_DESIGNATED = re.compile(r"\]\s*=\s*$")  # [KEY] = "name": a mapping from KEY to an op


def c_findings(text, where="<string>"):
    """Initializers of a C file naming two or more ops."""
    out = []
    depth = 0               # brace depth inside an initializer, 0 outside one
    strings, start = [], 0
    for m in _C_TOKEN.finditer(text):
        s, init, punct = m.group(1), m.group(2), m.group(3)
        if s is not None:
            if depth and not _DESIGNATED.search(text, max(0, m.start() - 8), m.start()):
                strings.append(s)
            continue
        if init is not None:
            if depth:
                depth += 1  # a nested designated initializer: .x = {...}
            else:
                depth, start = 1, m.start()
            continue
        if punct is None or not depth:
            continue  # a comment, a character literal, or braces outside an initializer
        depth += 1 if punct == "{" else -1
        if depth == 0:
            names = op_names(strings)
            if names:
                line = text.count("\n", 0, start) + 1
                out.append("%s:%d: %s" % (where, line, ", ".join(names)))
            strings = []
    return out


def _generated(path):
    with open(path) as f:
        return "do not edit" in f.read(400).lower()


def _scan(patterns, finder):
    out = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            if _generated(path):
                continue
            with open(path) as f:
                out += finder(f.read(), os.path.relpath(path, ROOT))
    return out


def test_ops_def_names_the_ops():
    assert {"add", "where", "cumsum" if any(o.name == "cumsum" for o in OPS) else "sum",
            "norm", "add_"} <= NAMES
    assert "exp_" in NAMES and "matmul_" not in NAMES  # in-place forms only where ops.def says


def test_python_client_lists_no_op_names():
    files = glob.glob(os.path.join(ROOT, "client/python/tensord/**/*.py"), recursive=True)
    assert any(p.endswith("__init__.py") for p in files)
    found = _scan(["client/python/tensord/**/*.py"], python_findings)
    assert not found, "hand-written op-name lists (ops.def is the list):\n" + "\n".join(found)


def test_cli_lists_no_op_names():
    found = _scan(["client/cli/*.c", "client/cli/*.h"], c_findings)
    assert not found, "hand-written op-name lists (ops.def is the list):\n" + "\n".join(found)


def test_c_client_lists_no_op_names():
    found = _scan(["client/c/*.c"], c_findings)
    assert not found, "hand-written op-name lists (ops.def is the list):\n" + "\n".join(found)


# --- the matcher itself: it catches the lists issue 15 removed, and not ordinary code ---
@pytest.mark.parametrize("code", [
    '_CAST_FIRST = {"sum", "mean", "prod", "softmax", "log_softmax", "logsumexp", "norm"}\n',
    '_SHAPE_OPS = {"reshape", "view", "permute", "expand", "repeat", "flip"}\n',
    '_POSITIONAL = {"transpose": ("dim", "dim2"), "squeeze": ("dim",)}\n',
    'if op in ("argmax", "argmin", "all", "any", "squeeze") and "dim" in kw:\n    pass\n',
    'if name in ("cat", "concat", "concatenate", "stack"):\n    pass\n',
    'if op == "std" or op == "var":\n    pass\n',
    '_CREATION = ["tensor", "zeros", "empty", "eye", "linspace"]\n',
])
def test_matcher_catches_python_op_lists(code):
    assert python_findings(code)


@pytest.mark.parametrize("code", [
    'if op == "norm":\n    p = kw.pop("p", 2)\n',
    '_DTYPES = {"float32": 1, "float64": 2, "bool": 5}\n',
    'if k in ("min", "max"):\n    scalar(v, getattr(a, k))\n',          # OpArgs' fields
    'for a, b in (("start_dim", "dim"), ("dim0", "dim")):\n    pass\n',
    'BUILTINS = ("print", "len", "abs", "round")\n',                       # Python's builtins
    '_ALIASES = {"concat": "cat", "concatenate": "cat"}\n',                # to one op
    '_OPERATORS = {"+": "add", "-": "sub"}\n',                            # a dict's values
    'x = ["add"]\n',
])
def test_matcher_passes_ordinary_python(code):
    assert not python_findings(code)


C_OP_NAMES = '''
/* a comment naming "add", "sub" is no list */
static const char *const OP_NAMES[] = {
    "add", "sub", "mul", "div", "matmul",
};
'''
C_SPECS = '''
static const struct opspec SPECS[] = {
    {"reshape", 1, {"*dims"}}, {"view", 1, {"*dims"}},
};
'''
C_REDUCTIONS = '''
static bool is_reduction(const char *op)
{
    static const char *const r[] = {"sum", "mean", "prod", "std", "var", "norm", "logsumexp"};
    return in_list(r, op);
}
'''
C_ORDINARY = '''
static const char *const DTYPES[][2] = {{"float32", "1"}, {"float64", "2"}, {"bool_", "5"}};
static const struct { const char *from, *to; } KW_ALIAS[] = {
    {"dim0", "dim"}, {"mean", "min"}, {"std", "max"}, {"to", "max"},
};
static const char *const OPFN[] = {[TDX_OP_ADD] = "add", [TDX_OP_SUB] = "sub"};
int f(const char *op, char c)
{
    if (tensord_op(c, "mul", prod, ab) != 0 || tensord_op(c, "matmul", mm, ab) != 0) {
        return 1;
    }
    if (strcmp(op, "norm") == 0 && c == '"') {
        return printf("%s", "sum");
    }
    return call_op(e, name[1] == 'a' ? "maximum" : "minimum");
}
'''


@pytest.mark.parametrize("code", [C_OP_NAMES, C_SPECS, C_REDUCTIONS])
def test_matcher_catches_c_op_lists(code):
    assert c_findings(code)


def test_matcher_passes_ordinary_c():
    assert c_findings(C_ORDINARY) == []
    assert c_findings(C_OP_NAMES) == ["<string>:3: add, div, matmul, mul, sub"]
