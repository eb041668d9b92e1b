"""tensord.save / tensord.load against Debian's torch, both ways: files torch.save writes load into
tensord with the same values, dtypes, shapes and requires_grad, and files tensord.save writes
load in real torch.load the same way; hostile archives fail with clear errors."""
import collections
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch


def sample():
    g = torch.Generator().manual_seed(3)
    sd = collections.OrderedDict()
    sd["w"] = torch.randn(3, 4, generator=g)
    sd["b"] = torch.arange(5)
    sd["mask"] = torch.tensor([True, False, True])
    sd["d"] = torch.randn(2, 3, dtype=torch.float64, generator=g).t()   # a transposed view
    sd["s"] = torch.randn(8, generator=g)[1::3]                         # a strided view
    sd["i"] = torch.tensor([[7, -8]], dtype=torch.int32)
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd._metadata = {"": {"version": 1}}
    return {"state": sd, "epoch": 12, "lr": 0.001, "names": ["a", "b"],
            "pair": (torch.tensor(1.5, requires_grad=True), None)}


def same(t_torch, t_td):
    assert str(t_td.dtype) == str(t_torch.dtype).replace("torch.", "tensord.")
    assert list(t_td.shape) == list(t_torch.shape)
    assert t_td.tolist() == t_torch.tolist()
    assert bool(t_td.requires_grad) == bool(t_torch.requires_grad)


def test_torch_save_then_tensord_load(td, tmp_path):
    obj = sample()
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    got = td.load(path)
    assert got["epoch"] == 12 and got["lr"] == 0.001 and got["names"] == ["a", "b"]
    assert isinstance(got["state"], collections.OrderedDict)
    assert list(got["state"]) == list(obj["state"])
    assert got["state"]._metadata == {"": {"version": 1}}
    for k, v in obj["state"].items():
        same(v, got["state"][k])
    same(obj["pair"][0], got["pair"][0])
    assert got["pair"][1] is None and isinstance(got["pair"], tuple)


def test_tensord_save_then_torch_load(td, tmp_path):
    obj = sample()
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    mine = td.load(path)
    out = tmp_path / "mine.pt"
    td.save(mine, out)
    back = torch.load(out)
    assert back["epoch"] == 12 and back["names"] == ["a", "b"]
    assert list(back["state"]) == list(obj["state"])
    assert back["state"]._metadata == {"": {"version": 1}}
    for k, v in obj["state"].items():
        assert back["state"][k].dtype == v.dtype
        assert torch.equal(back["state"][k], v), k
    assert back["pair"][0].requires_grad and back["pair"][0].item() == 1.5
    # the archive is torch's layout: one directory named after the file, aligned records
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names[0] == "mine/data.pkl" and names[-1] == "mine/version"
        assert zf.read("mine/version") == b"3\n"
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            if "/data/" in info.filename:
                data_at = info.header_offset + 30 + len(info.filename) + len(info.extra)
                assert data_at % 64 == 0, info.filename


def test_buffers_and_map_location(td):
    buf = io.BytesIO()
    td.save({"x": td.tensor([[1.0, 2.0]])}, buf)
    buf.seek(0)
    assert torch.load(buf)["x"].tolist() == [[1.0, 2.0]]
    buf = io.BytesIO()
    torch.save([torch.ones(2, dtype=torch.int64)], buf)
    for loc in (None, "cpu", torch.device("cpu"), {"cuda:0": "cpu"}, lambda s, l: s):
        buf.seek(0)
        got = td.load(buf, map_location=loc)
        assert got[0].tolist() == [1, 1] and str(got[0].dtype) == "tensord.int64"


def test_a_module_state_dict_round_trips(td, tmp_path):
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    torch.save(lin.state_dict(), tmp_path / "lin.pt")
    sd = td.load(tmp_path / "lin.pt")
    assert list(sd) == ["weight", "bias"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    want = lin(torch.tensor(x)).detach().numpy()
    got = (td.tensor(x) @ sd["weight"].t() + sd["bias"]).tolist()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    params = [torch.nn.Parameter(torch.randn(2))]
    torch.save(params, tmp_path / "p.pt")
    p = td.load(tmp_path / "p.pt")[0]
    assert p.requires_grad and p.tolist() == params[0].tolist()
    td.save([p], tmp_path / "p2.pt")
    back = torch.load(tmp_path / "p2.pt")[0]
    assert back.requires_grad and torch.equal(back, params[0].detach())


def archive(pkl, records=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        for name, data in records:
            zf.writestr("archive/" + name, data)
        zf.writestr("archive/version", b"3\n")
    buf.seek(0)
    return buf


def test_hostile_archives_fail_clearly(td):
    with pytest.raises(RuntimeError, match="zip format"):
        td.load(io.BytesIO(b"not a zip"))
    with pytest.raises(RuntimeError, match="no data.pkl"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("x/other", b"")
        buf.seek(0)
        td.load(buf)
    # a tensor that claims more elements than its record holds
    good = io.BytesIO()
    torch.save(torch.arange(4), good)
    good.seek(0)
    with zipfile.ZipFile(good) as zf:
        pkl = zf.read([n for n in zf.namelist() if n.endswith("data.pkl")][0])
        rec = zf.read([n for n in zf.namelist() if n.endswith("data/0")][0])
    with pytest.raises(pickle.UnpicklingError, match="holds 16 bytes"):
        td.load(archive(pkl, [("data/0", rec[:16])]))
    with pytest.raises(pickle.UnpicklingError, match="no record data/0"):
        td.load(archive(pkl))
    # weights_only refuses arbitrary globals; a plain load resolves them as pickle does
    evil = pickle.dumps(collections.Counter("ab"), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refuses the global collections.Counter"):
        td.load(archive(evil), weights_only=True)
    assert td.load(archive(evil)) == collections.Counter("ab")
    # a dtype tensord does not have
    buf = io.BytesIO()
    torch.save(torch.zeros(2, dtype=torch.uint8), buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="ByteStorage is not a dtype tensord has"):
        td.load(buf)
