"""Disk quotas and per-session files (issue 14, finding 4): Save and snapshot bytes count at the
file's logical size against --session-max-disk-bytes and --max-disk-bytes; a handle listed twice
in one Save is refused; a session's files live in its own directory, which no other session can
name, unless the operator chooses --shared-files.

Sizes are derived here from the safetensors layout (8 bytes of length, the JSON header padded
to a multiple of 8, then the data), never read back from the daemon."""
import hashlib
import json
import os
import time

import pytest

import tensord
import wire
from conftest import Daemon

pytestmark = pytest.mark.timeout(120)

pb = wire.pb
MiB = 1 << 20


def files_of(data_dir, s):
    """The session's own Save directory: files/<SHA-256 of its token>."""
    return os.path.join(data_dir, "files", hashlib.sha256(s.token).hexdigest())


def tree(path):
    """{relative path: size} of every regular file under path."""
    out = {}
    for root, _, names in os.walk(path):
        for n in names:
            p = os.path.join(root, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out[os.path.relpath(p, path)] = os.path.getsize(p)
    return out


def file_size(tensors, meta=None):
    """The size of a safetensors file holding float32 tensors {name: shape} in this order, as
    tensord writes it: compact JSON, metadata first, padded with spaces to a multiple of 8."""
    header, at = {}, 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [at, at + n]}
        at += n
    h = json.dumps(header, separators=(",", ":"))
    return 8 + (len(h) + 7) // 8 * 8 + at


def start(data_dir, *flags):
    """A daemon with --data-dir and flags; one that does not start fails the test."""
    d = Daemon("--data-dir", data_dir, *flags)
    if d.port is None:
        text = d.text()
        d.stop()
        pytest.fail("tensord did not start: " + text)
    return d


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "data")


def test_size_derivation_matches_a_file_written_by_save(data_dir):
    """The size formula the other tests rely on, checked once against a real file."""
    d = start(data_dir)
    try:
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as s:
            v = s.ones(1).expand(3, 1000)
            s.save("one", {"v": v})
            got = os.path.getsize(os.path.join(files_of(data_dir, s), "one.safetensors"))
            assert got == file_size({"v": (3, 1000)}, {"format": "pt"})
    finally:
        assert d.stop() == 0


def test_expanded_view_past_the_session_disk_quota_is_refused_and_writes_nothing(data_dir):
    """The attack: a 4-byte tensor expanded to 8 MiB, saved again and again (a new view each
    time, so no handle repeats). The session's files stop at its quota of 32 MiB."""
    quota = 32 * MiB
    d = start(data_dir, "--session-max-disk-bytes", str(quota))
    try:
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as s:
            big = s.ones(1).expand(9, MiB)  # 36 MiB at its logical size
            with pytest.raises(tensord.TensorError) as e:
                s.save("big", {"x": big})
            assert e.value.code == pb.QUOTA_EXCEEDED
            assert "disk quota exceeded: session_max_disk_bytes %d" % quota in str(e.value)
            assert tree(os.path.join(data_dir, "files")) == {}  # not even a temporary
            each = file_size({"x": (2, MiB)}, {"format": "pt"})
            saved = 0
            for i in range(8):
                try:
                    s.save("f%d" % i, {"x": s.ones(1).expand(2, MiB)})
                    saved += 1
                except tensord.TensorError as err:
                    assert err.code == pb.QUOTA_EXCEEDED
                    assert "session_max_disk_bytes %d" % quota in str(err)
                    break
            assert saved == quota // each  # 3 files of 8 MiB + header; the 4th is refused
            files = tree(files_of(data_dir, s))
            assert sorted(files) == ["f%d.safetensors" % i for i in range(saved)]
            assert sum(files.values()) == saved * each <= quota
            assert (s.ones(2) + 1).tolist() == [2.0, 2.0]  # the session goes on
    finally:
        assert d.stop() == 0


def test_the_same_handle_under_two_names_is_refused(data_dir):
    d = start(data_dir)
    try:
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as s:
            x = s.ones(1).expand(4, 1024)
            with pytest.raises(tensord.TensorError) as e:
                s.save("dup", {"a": x, "b": x, "c": s.zeros(2)})
            assert e.value.code == pb.INVALID_ARGUMENT
            assert "handle %d is listed twice in one Save" % x._h in str(e.value)
            assert tree(os.path.join(data_dir, "files")) == {}
            s.save("ok", {"a": x, "b": x + 0})  # two handles, even of equal values, are fine
            assert sorted(s.list_file("ok")) == ["a", "b"]
    finally:
        assert d.stop() == 0


def test_a_session_cannot_load_or_overwrite_another_sessions_file(data_dir):
    d = start(data_dir)
    try:
        a = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        b = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        a.save("f", {"x": a.tensor([1.0, 2.0])})
        with pytest.raises(tensord.TensorError, match="cannot open f.safetensors"):
            b.load("f")
        b.save("f", {"x": b.tensor([7.0])})  # B's own "f", beside A's
        assert a.load("f")["x"].tolist() == [1.0, 2.0]
        assert b.load("f")["x"].tolist() == [7.0]
        assert sorted(tree(os.path.join(data_dir, "files"))) == sorted(
            [os.path.join(hashlib.sha256(t).hexdigest(), "f.safetensors")
             for t in (a.token, b.token)])
        # the directory is named by the token's hash, never by the token
        for t in (a.token, b.token):
            assert t.hex() not in "".join(tree(os.path.join(data_dir, "files")))
        a.close()
        b.close()
    finally:
        assert d.stop() == 0


def test_shared_files_is_one_namespace(data_dir):
    d = start(data_dir, "--shared-files")
    try:
        a = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        b = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        a.save("f", {"x": a.tensor([1.0, 2.0])})
        assert b.load("f")["x"].tolist() == [1.0, 2.0]
        assert sorted(tree(os.path.join(data_dir, "files"))) == ["f.safetensors"]
        a.close()
        b.close()
    finally:
        assert d.stop() == 0


def test_overwriting_a_file_does_not_count_it_twice(data_dir):
    each = file_size({"x": (150 * 1024,)}, {"format": "pt"})  # 600 KiB + header
    d = start(data_dir, "--session-max-disk-bytes", str(MiB))
    try:
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as s:
            for _ in range(4):
                s.save("f", {"x": s.ones(1).expand(150 * 1024)})
            with pytest.raises(tensord.TensorError, match="session_max_disk_bytes"):
                s.save("g", {"x": s.ones(1).expand(150 * 1024)})
            s.save("f", {"x": s.ones(1)})  # shrinking it gives the bytes back
            s.save("g", {"x": s.ones(1).expand(150 * 1024)})
            assert sorted(tree(files_of(data_dir, s)).values()) == \
                sorted([file_size({"x": (1,)}, {"format": "pt"}), each])
    finally:
        assert d.stop() == 0


def test_usage_is_still_counted_after_a_restart(data_dir):
    """Save near the limits, restart, and the next Save is refused: the session's own quota
    (its directory, found again by its token) and the data dir's (counted from the disk)."""
    n = 150 * 1024  # 600 KiB files under a 1 MiB session quota
    total = MiB + MiB // 4
    flags = ("--session-max-disk-bytes", str(MiB), "--max-disk-bytes", str(total))
    d = start(data_dir, *flags)
    try:
        s = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        x = s.ones(1).expand(n)
        s.save("f", {"x": x})
        del x  # freed with the next request, so the session's snapshot is small and fits
        assert s.tensor([0.0]).tolist() == [0.0]
        token = s.token
        s._c.close()
    finally:
        assert d.stop() == 0
    d = start(data_dir, *flags)
    try:
        r = tensord.connect("127.0.0.1:%d" % d.port, resume=token, sync=True)
        with pytest.raises(tensord.TensorError, match="session_max_disk_bytes %d" % MiB):
            r.save("g", {"x": r.ones(1).expand(n)})
        r.save("f", {"x": r.ones(1).expand(n)})  # an overwrite still fits
        assert r.load("f")["x"].shape == (n,)
        # a new session has its own quota, but the data dir's total is 1.25 MiB
        other = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        with pytest.raises(tensord.TensorError, match="max_disk_bytes %d" % total):
            other.save("g", {"x": other.ones(1).expand(200 * 1024)})
        other.save("small", {"x": other.ones(1).expand(1000)})
        r.close()
        other.close()
    finally:
        assert d.stop() == 0


def test_data_dir_stays_within_the_global_quota_with_snapshots(data_dir):
    """Three sessions each hold a view of 4 bytes standing for 1 MiB and save what they can;
    at shutdown their snapshots (written at logical size) must fit too, or are skipped."""
    limit = 3 * MiB
    d = start(data_dir, "--max-disk-bytes", str(limit))
    try:
        sessions = [tensord.connect("127.0.0.1:%d" % d.port, sync=True) for _ in range(3)]
        refused = 0
        for i, s in enumerate(sessions):
            keep = s.ones(1).expand(256 * 1024)  # stays in the session: its snapshot is 1 MiB
            s._keep = keep
            for j in range(3):
                try:
                    s.save("f%d" % j, {"x": s.ones(1).expand(128 * 1024)})
                except tensord.TensorError as e:
                    assert e.code == pb.QUOTA_EXCEEDED
                    assert "disk quota exceeded: max_disk_bytes %d" % limit in str(e)
                    refused += 1
            assert sum(tree(data_dir).values()) <= limit
        assert refused > 0
        for s in sessions:
            s._c.close()
    finally:
        assert d.stop() == 0
    text_total = sum(tree(data_dir).values())
    assert text_total <= limit


def _fill_then_refuse(d, n, total):
    """Session A saves a 600 KiB file; session B's 800 KiB Save is then past the data dir's
    quota of `total` and refused. Returns (A, B)."""
    a = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
    b = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
    a.save("f", {"x": a.ones(1).expand(n)})
    assert os.path.isdir(files_of(d.data_dir, a))
    with pytest.raises(tensord.TensorError, match="max_disk_bytes %d" % total):
        b.save("g", {"x": b.ones(1).expand(200 * 1024)})
    return a, b


def _disk_flags():
    n = 150 * 1024  # 600 KiB + header; 200 * 1024 is 800 KiB: the two do not fit together
    total = MiB + MiB // 4
    return n, total, ("--max-disk-bytes", str(total))


def test_closing_a_session_removes_its_files_and_gives_back_the_disk_quota(data_dir):
    """Open, fill, close, repeat must not fill the data dir: CloseSession takes the session's
    directory with it, and its bytes leave the global count."""
    n, total, flags = _disk_flags()
    d = start(data_dir, *flags)
    d.data_dir = data_dir
    try:
        a, b = _fill_then_refuse(d, n, total)
        gone = files_of(data_dir, a)
        a.close()  # CloseSession: answered after the session ended
        assert not os.path.exists(gone)
        b.save("g", {"x": b.ones(1).expand(200 * 1024)})  # fits only now
        assert b.load("g")["x"].shape == (200 * 1024,)
        # and again: a session that fills the quota and closes leaves nothing behind
        for _ in range(3):
            c = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
            c.save("h", {"x": c.ones(1).expand(100 * 1024)})
            c.close()
        assert sorted(tree(os.path.join(data_dir, "files"))) == [
            os.path.join(hashlib.sha256(b.token).hexdigest(), "g.safetensors")]
        b.close()
        assert tree(os.path.join(data_dir, "files")) == {}
    finally:
        assert d.stop() == 0


def test_a_disconnected_session_keeps_its_files_until_it_ends(data_dir):
    """Losing the connection is not the end (the session may resume within its TTL): its files
    stay, and go when it is closed after resuming."""
    d = start(data_dir, "--session-ttl", "60s")
    try:
        a = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        a.save("f", {"x": a.tensor([1.0, 2.0])})
        token, kept = a.token, files_of(data_dir, a)
        a._c.close()  # the connection goes, the session stays
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as other:
            assert other.tensor([0.0]).tolist() == [0.0]  # the daemon has seen the close
        assert sorted(tree(kept)) == ["f.safetensors"]
        r = tensord.connect("127.0.0.1:%d" % d.port, resume=token, sync=True)
        assert r.load("f")["x"].tolist() == [1.0, 2.0]
        r.close()
        assert not os.path.exists(kept)
    finally:
        assert d.stop() == 0


def test_an_expired_session_takes_its_files_with_it(data_dir):
    """A session left idle past --session-ttl ends: its files go and the data dir's quota
    comes back, so a Save that only fits after the removal succeeds."""
    n, total, flags = _disk_flags()
    d = start(data_dir, "--session-ttl", "1s", *flags)
    d.data_dir = data_dir
    try:
        a, b = _fill_then_refuse(d, n, total)
        gone = files_of(data_dir, a)
        a._c.close()  # no CloseSession: the TTL ends it (the sweep runs every 250 ms)
        deadline = time.monotonic() + 20
        while os.path.exists(gone) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(gone), "the expired session's files are still there"
        b.save("g", {"x": b.ones(1).expand(200 * 1024)})  # fits only now
        assert sorted(tree(os.path.join(data_dir, "files"))) == [
            os.path.join(hashlib.sha256(b.token).hexdigest(), "g.safetensors")]
        b.close()
    finally:
        assert d.stop() == 0


def test_shared_files_stay_when_their_session_ends(data_dir):
    """With --shared-files no file is a session's: closing or expiring removes none."""
    d = start(data_dir, "--shared-files", "--session-ttl", "1s")
    try:
        a = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        a.save("f", {"x": a.tensor([1.0])})
        a.close()
        b = tensord.connect("127.0.0.1:%d" % d.port, sync=True)
        b.save("g", {"x": b.tensor([2.0])})
        b._c.close()
        time.sleep(2.5)  # well past the TTL and several sweeps
        with tensord.connect("127.0.0.1:%d" % d.port, sync=True) as c:
            assert c.load("f")["x"].tolist() == [1.0]
            assert c.load("g")["x"].tolist() == [2.0]
        assert sorted(tree(os.path.join(data_dir, "files"))) == ["f.safetensors", "g.safetensors"]
    finally:
        assert d.stop() == 0
