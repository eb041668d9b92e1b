"""torch's call forms besides the ops, through the Python client, against PyTorch: out=, numpy's
axis=/keepdims=, Tensor.data, the legacy constructors, new_*, requires_grad= on factories,
devices and CUDA's refusal, layout facts (stride, storage_offset, is_contiguous), type/type_as,
the *_as methods, x.T's deprecation warning, broadcast error texts and operands of two sessions.

Each case is a function of the module (torch or tensord) run once with each; the test compares
what the two give (values, dtype, shape, printed text with "torch." as "tensord.", error text).
"""
import warnings

import pytest
import torch

import tensord


def outcome(m, case):
    """What a case gives, comparable across the two modules."""
    try:
        r = case(m)
        if isinstance(r, (torch.Tensor, tensord.Tensor)):
            return ("tensor", str(r).replace("torch.", "tensord."), str(r.dtype).split(".")[1],
                    list(r.shape), bool(r.requires_grad))
        return ("value", str(r).replace("torch.", "tensord."))
    except (RuntimeError, IndexError, TypeError, ValueError, AssertionError,
            NotImplementedError) as e:
        text = e.message if isinstance(e, tensord.TensorError) else str(e)
        return ("error", _err_kind(e), text)


def _err_kind(e):
    return "RuntimeError" if isinstance(e, RuntimeError) else type(e).__name__


def same(case, td):
    want, got = outcome(torch, case), outcome(td, case)
    assert got == want


def X(m):
    return m.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


CASES = {
    # out=
    "out_same_shape": lambda m: (lambda o: (m.add(X(m), 1, out=o), o)[1])(m.empty(2, 3)),
    "out_returns_out": lambda m: (lambda o: m.mul(X(m), 2, out=o) is o)(m.empty(2, 3)),
    "out_empty_resized": lambda m: (lambda o: (m.neg(X(m), out=o), o)[1])(m.empty(0)),
    "out_wider_dtype": lambda m: (lambda o: (m.add(X(m), 1, out=o), o)[1])(
        m.empty(2, 3, dtype=m.float64)),
    "out_int_into_float": lambda m: (lambda o: (m.add(m.tensor([1, 2]), 1, out=o), o)[1])(
        m.empty(2)),
    "out_bad_cast": lambda m: m.add(X(m), 1, out=m.empty(2, 3, dtype=m.int64)),
    "out_bad_cast_bool": lambda m: m.add(m.tensor([1, 2]), 1, out=m.empty(2, dtype=m.bool)),
    "out_matmul": lambda m: (lambda o: (m.matmul(X(m), X(m).t(), out=o), o)[1])(m.empty(2, 2)),
    "out_sum_dim": lambda m: (lambda o: (m.sum(X(m), 1, out=o), o)[1])(m.empty(2)),
    # numpy's names
    "axis": lambda m: m.sum(X(m), axis=0),
    "axis_keepdims": lambda m: m.sum(X(m), axis=1, keepdims=True),
    "method_axis": lambda m: X(m).mean(axis=1),
    "method_keepdims": lambda m: X(m).sum(1, keepdims=True),
    # Tensor.data
    "data": lambda m: X(m).requires_grad_().data,
    "data_alias": lambda m: (lambda x: (x.data.mul_(2), x)[1])(X(m)),
    "data_sub_assign": lambda m: (lambda w: (w.data.sub_(1), w.detach())[1])(
        m.ones(3, requires_grad=True)),
    "data_assign": lambda m: (lambda w: (setattr(w, "data", w.data * 3 - 1), w)[1])(
        m.ones(3, requires_grad=True)),
    "data_isub": lambda m: (lambda w: (exec("w.data -= 2", {"w": w}), w)[1])(
        m.ones(3, requires_grad=True)),
    # legacy constructors
    "Tensor_sizes": lambda m: m.Tensor(2, 3).shape,
    "Tensor_data": lambda m: m.Tensor([[1, 2], [3, 4]]),
    "Tensor_empty": lambda m: m.Tensor().shape,
    "Tensor_size_obj": lambda m: m.Tensor(m.Size([4])).shape if hasattr(m, "Size") else None,
    "Tensor_isinstance": lambda m: isinstance(m.Tensor([1.0]), m.Tensor),
    "FloatTensor": lambda m: m.FloatTensor([1, 2]),
    "DoubleTensor": lambda m: m.DoubleTensor([1, 2]),
    "LongTensor": lambda m: m.LongTensor([1.7, -2.2]),
    "IntTensor": lambda m: m.IntTensor([3, 4]),
    "BoolTensor": lambda m: m.BoolTensor([1, 0, 2]),
    "LongTensor_sizes": lambda m: (m.LongTensor(2, 2).shape, m.LongTensor(2, 2).dtype),
    # new_*
    "new_ones": lambda m: X(m).new_ones(2),
    "new_ones_tuple": lambda m: X(m).new_ones((2, 1)),
    "new_zeros_dtype": lambda m: X(m).new_zeros(2, dtype=m.int64),
    "new_full": lambda m: X(m).new_full((2,), 3),
    "new_full_long": lambda m: m.tensor([1, 2]).new_full((2,), 3.7),
    "new_empty": lambda m: X(m).new_empty(2, 5).shape,
    "new_tensor": lambda m: X(m).new_tensor([1, 2]),
    "new_tensor_long": lambda m: m.tensor([1]).new_tensor([1.5, 2.5]),
    "new_ones_grad": lambda m: X(m).new_ones(2, requires_grad=True),
    # requires_grad= on factories
    "tensor_rg": lambda m: m.tensor([1.0], requires_grad=True),
    "zeros_rg": lambda m: m.zeros(2, requires_grad=True),
    "ones_rg": lambda m: m.ones(2, requires_grad=True),
    "full_rg": lambda m: m.full((2,), 1.5, requires_grad=True),
    "eye_rg": lambda m: m.eye(2, requires_grad=True),
    "linspace_rg": lambda m: m.linspace(0, 1, 3, requires_grad=True),
    "arange_rg": lambda m: m.arange(3.0, requires_grad=True),
    "zeros_like_rg": lambda m: m.zeros_like(X(m), requires_grad=True),
    "ones_like_rg": lambda m: m.ones_like(X(m), requires_grad=True),
    "full_like_rg": lambda m: m.full_like(X(m), 2.0, requires_grad=True),
    "empty_rg": lambda m: m.empty(2, requires_grad=True).shape,
    "rand_rg": lambda m: m.rand(2, requires_grad=True).requires_grad,
    # devices
    "device": lambda m: X(m).device,
    "device_repr": lambda m: repr(X(m).device),
    "device_cpu": lambda m: repr(m.device("cpu")),
    "device_cuda1": lambda m: (repr(m.device("cuda:1")), str(m.device("cuda:1"))),
    "device_eq": lambda m: m.device("cpu") == X(m).device,
    "device_bad": lambda m: m.device("foo"),
    "to_device": lambda m: (lambda x: x.to(m.device("cpu")) is x)(X(m)),
    "to_str": lambda m: (lambda x: x.to("cpu") is x)(X(m)),
    "to_device_dtype": lambda m: X(m).to("cpu", m.float64),
    "to_kw": lambda m: X(m).to(device="cpu", dtype=m.int32),
    "to_other": lambda m: X(m).to(m.tensor([1])),
    "to_same_dtype": lambda m: (lambda x: x.to(m.float32) is x)(X(m)),
    "to_copy": lambda m: (lambda x: x.to(m.float32, copy=True) is x)(X(m)),
    "cpu": lambda m: (lambda x: x.cpu() is x)(X(m)),
    "cuda_available": lambda m: (m.cuda.is_available(), m.cuda.device_count()),
    "cuda": lambda m: X(m).cuda(),
    "to_cuda": lambda m: X(m).to("cuda"),
    "is_cuda": lambda m: X(m).is_cuda,
    # size facts
    "dim": lambda m: (X(m).dim(), X(m).ndim, m.tensor(1.0).dim()),
    "numel": lambda m: (X(m).numel(), X(m).nelement(), m.numel(X(m))),
    "element_size": lambda m: (X(m).element_size(), m.tensor([1]).element_size(),
                               m.tensor([True]).element_size(),
                               X(m).double().element_size(), X(m).int().element_size()),
    # layout
    "stride": lambda m: X(m).stride(),
    "stride_dim": lambda m: (X(m).stride(0), X(m).stride(-1)),
    "stride_t": lambda m: X(m).t().stride(),
    "stride_expand": lambda m: m.ones(3).expand(2, 3).stride(),
    "stride_select": lambda m: (m.ones(2, 3, 4)[1].stride(), m.ones(2, 3, 4)[1].storage_offset()),
    "stride_slice": lambda m: (m.ones(4, 6)[1:, ::2].stride(),
                               m.ones(4, 6)[1:, 2:].storage_offset()),
    "stride_dim_bad": lambda m: X(m).stride(2),
    "storage_offset": lambda m: X(m).storage_offset(),
    "contiguous": lambda m: (X(m).is_contiguous(), X(m).t().is_contiguous(),
                             X(m).t().contiguous().is_contiguous(),
                             m.ones(1, 3)[:, ::2].is_contiguous(),
                             m.ones(3).expand(2, 3).is_contiguous(),
                             m.ones(0, 3).t().is_contiguous()),
    # type, type_as, *_as
    "type_name": lambda m: X(m).type(),
    "type_name_long": lambda m: m.tensor([1]).type(),
    "type_str": lambda m: X(m).type("torch.DoubleTensor"),
    "type_dtype": lambda m: X(m).type(m.int64),
    "type_legacy": lambda m: X(m).type(m.LongTensor),
    "type_as": lambda m: X(m).type_as(m.tensor([1])),
    "type_as_same": lambda m: (lambda x: x.type_as(m.tensor([1.0])) is x)(X(m)),
    "view_as": lambda m: X(m).view_as(m.ones(3, 2)),
    "expand_as": lambda m: m.tensor([1.0, 2.0, 3.0]).expand_as(X(m)),
    "reshape_as": lambda m: X(m).t().reshape_as(m.ones(6)),
    "view_as_bad": lambda m: X(m).view_as(m.ones(4)),
    # x.T
    "T2": lambda m: X(m).T,
    "T3": lambda m: m.arange(24).reshape(2, 3, 4).T,
    "T1": lambda m: m.tensor([1, 2]).T,
    "T0": lambda m: m.tensor(2.0).T,
    # broadcast errors: the trailing dimension first
    "broadcast_23_32": lambda m: m.ones(2, 3) + m.ones(3, 2),
    "broadcast_3d": lambda m: m.ones(2, 3, 4) + m.ones(3, 2, 5),
    "broadcast_rank": lambda m: m.ones(2, 3) + m.ones(2),
    "broadcast_empty": lambda m: m.ones(0) + m.ones(2),
    "broadcast_mul": lambda m: m.ones(4, 1, 3) * m.ones(2, 4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_against_torch(td, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same(CASES[name], td)


def test_out_resize_warns_as_torch(td):
    def run(m):
        o = m.empty(2)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m.add(m.ones(3), 1, out=o)
        return [(x.category, str(x.message).split(" (Triggered")[0]) for x in w], o.tolist()
    assert run(td) == run(torch)

    def quiet(m):  # an empty out, or one of the right shape: no warning
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m.add(m.ones(3), 1, out=m.empty(0))
            m.add(m.ones(3), 1, out=m.empty(3))
        return len(w)
    assert quiet(td) == quiet(torch) == 0


def test_T_warns_once_as_torch(td):
    """torch 1.13 warns once per process (TORCH_WARN_ONCE) on x.T for other than 2 (and 0)
    dims; the text is torch's less its C++ source location."""
    import subprocess
    import sys
    code = ("import warnings, sys\nwarnings.simplefilter('always')\nimport %s as m\n"
            "x = m.ones(2, 3)\nx.T\nm.tensor(1.0).T\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    m.ones(2, 3, 4).T\n    m.ones(3).T\n"
            "print([(c.category.__name__, str(c.message).split(' (Triggered')[0]) for c in w])\n")
    import os
    env = dict(os.environ)
    outs = [subprocess.run([sys.executable, "-c", code % name], env=env, capture_output=True,
                           text=True, timeout=120) for name in ("torch", "tensord")]
    assert outs[0].returncode == 0 and outs[1].returncode == 0, outs[1].stderr
    # torch's text with tensord's name prefix (the one rule of printed text and messages)
    assert outs[1].stdout == outs[0].stdout.replace("torch.", "tensord.")
    assert "deprecated" in outs[0].stdout


def test_new_tensor_from_tensor_warns_as_torch(td):
    def run(m):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = m.ones(2).new_tensor(m.tensor([1, 2]))
        return [str(x.message) for x in w], r.tolist(), str(r.dtype).split(".")[1]
    assert run(td) == run(torch)


def test_data_is_a_detached_alias(td):
    x = td.ones(3, requires_grad=True)
    d = x.data
    assert not d.requires_grad and d.grad_fn is None
    d.add_(1)
    assert x.tolist() == [2.0, 2.0, 2.0]
    (x * 2).sum().backward()  # the graph is untouched by the alias
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_operands_of_two_sessions_are_refused(td, daemon):
    """torch's error for operands on two devices; here each session is a device (torch's text
    would name e.g. "cuda:0 and cpu!"): never a silent result from the other session's handle."""
    a = td.tensor([1.0, 2.0])
    with tensord.connect("127.0.0.1:%d" % daemon) as s2:
        b = s2.tensor([10.0, 20.0])
        for f in (lambda: a + b, lambda: b * a, lambda: td.cat([a, b]), lambda: a.add_(b),
                  lambda: s2.matmul(b, a)):
            with pytest.raises(RuntimeError) as e:
                f()
            assert str(e.value).startswith("Expected all tensors to be on the same device, but "
                                           "found at least two devices, ")
        assert (b + b).tolist() == [20.0, 40.0]
    assert a.tolist() == [1.0, 2.0]
