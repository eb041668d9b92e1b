"""NumPy memory sharing for tensord's Python client: torch's from_numpy()/numpy() semantics with
the tensor's storage on the server.

torch shares one buffer between a tensor and the ndarray from ``from_numpy(a)`` or
``t.numpy()``. Here the tensor lives on the server, so the client keeps the two in step:

* ndarray -> tensor: before a tensor whose storage has a shared ndarray is used (an op input,
  printing, item/tolist/numpy), the ndarray's bytes are compared with those last sent, and only
  the changed span of each changed chunk is sent (a Write request, or for a tensor that is a view
  a copy_ from an uploaded copy).
* tensor -> ndarray: after an in-place op on any tensor of that storage (views and ``x[i] = v``
  included), the shared ndarrays are read back before control returns.

The rule that keeps this cheap: an ndarray that nothing outside the client references (by
sys.getrefcount, over the array and every ndarray in its ``.base`` chain) cannot change, so
``from_numpy`` of such an array (``from_numpy(np.load(f))``) shares nothing at all, and a share
whose ndarray the user has dropped is checked once more and then forgotten. A share whose
ndarray is still referenced costs, per use of its tensor, one byte comparison of the array
against a snapshot (a copy of the array, kept while it is shared), and per in-place op one read
of the tensor. Tensors with no shared ndarray pay one attribute test.

An array that ``numpy()`` made on pooled memory (tensord._pool's Block) needs no snapshot where
the kernel can record writes (Block.watch: Linux 6.7's asynchronous userfaultfd write-protect
and PAGEMAP_SCAN): the check is then a list of the pages written since the last one, and the
pages written are sent whole (their other bytes are the values the tensor holds already). That
holds only while the array is its storage's one shared array: a second (another numpy(), a
view's, from_numpy's) turns every array of the storage to snapshots (attach). After an in-place
op, a watched array costs one comparison with the bytes read back (writes racing the copy).
"""
from __future__ import annotations

import sys
import weakref
from typing import Any, Callable, List

from . import _conn
from ._conn import np

CHUNK = 1 << 16  # comparison granularity: a changed chunk sends only its changed span
shares_made = 0  # Shares ever made in this process: 0 lets callers skip looking for any


class Entry:
    """One ndarray shared with one tensor of a storage: ``t`` the tensor whose values the array
    mirrors, ``snap`` the array's bytes as last synchronised, ``direct`` whether t is a fresh
    contiguous tensor (so a Write at a byte offset reaches it). ``block``: the pooled memory the
    array is (its first byte, C order), watched for writes instead of a snapshot (snap None)."""

    __slots__ = ("t", "arr", "snap", "direct", "block", "pending")

    def __init__(self, t: Any, arr: Any, direct: bool, block: Any = None):
        # The storage's root holds its Share, which holds this entry: a strong reference back
        # to the root would make a cycle that keeps the tensor, the array and its snapshot
        # alive until the cyclic collector runs (and a download's pooled memory out of reuse).
        # The root is alive whenever its Share is used, so a weak reference does.
        self.t = weakref.ref(t) if t._root is None else t
        self.arr = arr
        self.direct = direct
        self.block = None
        self.snap = None
        self.pending: List[Any] = []  # watched: byte spans written but not recorded (sync_out)
        if block is not None and direct and block.watch():
            self.block = block  # the kernel records the writes: no snapshot to take
        else:
            self.snap = _snapshot(arr)


class Share:
    """The shared ndarrays of one storage; lives on the storage's root tensor (``_share``)."""

    __slots__ = ("entries", "busy")

    def __init__(self) -> None:
        self.entries: List[Entry] = []
        self.busy = False


def _snapshot(arr: Any) -> Any:
    """A copy of the array's bytes (flat uint8), in pooled memory when it is large (_pool.c):
    a numpy() result's snapshot is as large as the result, and fresh pages cost more than the
    copy on some VMs."""
    src = _bytes_of(arr)
    if src.nbytes < (1 << 20) or _conn._pool is None:
        return src.copy()
    snap = np.frombuffer(_conn.recv_buffer(src.nbytes), dtype=np.uint8)
    np.copyto(snap, src)
    return snap


def _bytes_of(arr: Any) -> Any:
    """The array's bytes in C order as a flat uint8 array (a view when it is contiguous)."""
    a = np.ascontiguousarray(arr)
    return a.reshape(-1).view(np.uint8)


def _tensor(e: Entry) -> Any:
    """The tensor an entry mirrors (its weak reference resolved: the root is alive while its
    Share is in use)."""
    t = e.t
    return t() if isinstance(t, weakref.ref) else t


def held(e: Entry) -> bool:
    """Whether anything but this entry references the ndarray or an array it views."""
    # e.arr's references: the entry's slot and getrefcount's argument
    if sys.getrefcount(e.arr) > 2:
        return True
    b = e.arr.base
    while b is not None:
        # the child's .base slot, the local b, and getrefcount's argument
        if sys.getrefcount(b) > 3:
            return True
        b = getattr(b, "base", None)
    return False


def root(t: Any) -> Any:
    return t._root if t._root is not None else t


def attach(t: Any, arr: Any, direct: bool, block: Any = None) -> None:
    """Shares arr with tensor t (whose values are arr's now). block: the pooled Block whose
    memory arr is, from its first byte in C order (numpy() passes it), or None."""
    global shares_made
    r = root(t)
    if r._share is None:
        r._share = Share()
        shares_made += 1
        if r._is_grad:  # backward changes it in place, with no in-place op the client sees
            s = r._s
            if s.__dict__.get("_grad_shares") is None:
                s._grad_shares = []
            s._grad_shares.append(weakref.ref(r))
    entries = r._share.entries
    if entries:
        # The kernel's record is of whole pages, whose other bytes are sent as the array holds
        # them: right only while this array is the storage's one mirror. With another array of
        # it (a second numpy(), a view's, from_numpy's), sending a page would undo that array's
        # writes to the page's other elements. So every array of such a storage compares with a
        # snapshot; the watched ones take theirs now (the callers synchronised them just before).
        block = None
        for e in entries:
            if e.block is not None:
                e.block = None
                e.snap = _snapshot(e.arr)
    entries.append(Entry(t, arr, direct, block))


def sync_grads(s: Any, after: bool) -> None:
    """Around a backward on session s, for the .grad tensors that have shared ndarrays
    (backward accumulates into a .grad in place, as torch's): before it is sent, the arrays'
    changes go to their tensors; after, the tensors are read back into them. Costs nothing when
    no .grad's array is shared; else a wait for the backward and one read per such .grad."""
    refs = s.__dict__.get("_grad_shares")
    if not refs:
        return
    keep = []
    for ref in refs:
        g = ref()
        if g is None or g._share is None:
            continue
        (sync_out if after else sync_in)(g._share)
        if g._share.entries:
            keep.append(ref)
        else:
            g._share = None
    s._grad_shares = keep


def _each_entry(share: Share, fn: Callable[[Entry], bool]) -> None:
    """Runs fn over the share's entries and keeps those it returns True for; a call made while
    one is running (from within fn) does nothing."""
    if share.busy:
        return
    share.busy = True
    try:
        keep = []
        for e in share.entries:
            if fn(e):
                keep.append(e)
        share.entries[:] = keep
    finally:
        share.busy = False


def sync_in(share: Share) -> None:
    """Sends the changes made to the shared ndarrays since they were last synchronised."""
    _each_entry(share, _sync_in_entry)


def _sync_in_entry(e: Entry) -> bool:
    live = held(e)
    _send_changes(e)
    return live


def _send_changes(e: Entry) -> None:
    cur = _bytes_of(e.arr)
    snap = e.snap
    n = cur.size
    item = e.arr.itemsize or 1
    spans = []
    if e.block is not None:
        # the pages written since the last check (whole pages: a multiple of any itemsize),
        # protected again by the same call
        for first, end in e.pending + e.block.written():
            if first < n:
                spans.append(((first // item) * item, min(n, -(-end // item) * item)))
        e.pending = []
        spans.sort()
        n = 0  # done
    elif _conn._pool is not None and cur.flags.c_contiguous and snap.flags.c_contiguous:
        # the same spans, found by memcmp (tensord._pool.diff; tests compare the two)
        for first, end in _conn._pool.diff(cur, snap, CHUNK):
            spans.append(((first // item) * item, -(-end // item) * item))
        n = 0  # done
    for off in range(0, n, CHUNK):
        end = min(n, off + CHUNK)
        a, b = cur[off:end], snap[off:end]
        if np.array_equal(a, b):
            continue
        d = np.flatnonzero(a != b)
        lo = off + (int(d[0]) // item) * item
        hi = off + -(-(int(d[-1]) + 1) // item) * item
        spans.append((lo, hi))
    if not spans:
        return
    if e.block is not None:  # adjacent pages' spans, merged: one Write each
        merged = [spans[0]]
        for lo, hi in spans[1:]:
            if lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        spans = merged
    # What is sent is what the snapshot records as sent: the snapshot takes the spans first and
    # the bytes go from it, so a write to the array while they are sent (another thread, the
    # GIL released around the socket) differs from the snapshot and is sent next time; sent
    # from the array and copied after, such a write reached the snapshot unsent (lost). Watched
    # memory needs no copy: written() protected the pages again, so a later write is recorded.
    data = cur
    if snap is not None:
        for lo, hi in spans:
            snap[lo:hi] = cur[lo:hi]
        data = snap
    t = _tensor(e)
    s = t._s
    if e.direct:
        for lo, hi in spans:
            req = _conn.pb.Request()
            req.write.handle = t._h
            req.write.offset = lo
            s._send(req, "numpy sharing (write)", memoryview(data[lo:hi]))
    else:
        # a view: its bytes are not contiguous on the server; copy an uploaded copy into it
        src = s.tensor(data.view(e.arr.dtype).reshape(e.arr.shape))
        s._op("copy", [t, src], inplace=True)


def sync_out(share: Share) -> None:
    """Reads the storage's tensors back into their shared ndarrays (after an in-place op)."""
    _each_entry(share, _sync_out_entry)


def _sync_out_entry(e: Entry) -> bool:
    if not held(e):
        return False  # nothing can see the array any more: forget it
    data = _tensor(e)._fetch()
    got = np.frombuffer(data, dtype=e.arr.dtype).reshape(e.arr.shape)
    if e.block is not None and e.arr.flags.writeable:
        # Protected before the copy, so a write racing it (another thread) is recorded; but the
        # copy is too, on every page: written() forgets them, and the array's bytes that differ
        # from the tensor's after it are a write of the user's since the copy, sent next time.
        e.block.protect()
        np.copyto(e.arr, got)
        e.block.written()
        e.pending += _conn._pool.diff(_bytes_of(e.arr), np.frombuffer(data, dtype=np.uint8),
                                      CHUNK)
        return True
    if e.arr.flags.writeable:
        np.copyto(e.arr, got)
    if e.block is not None:
        return True  # a read-only array: nothing written, nothing to send
    # the snapshot takes what the tensor holds, not the array's bytes read again: a write to
    # the array since the copy above (another thread) then differs from it and is sent
    # (a read-only array keeps its values: its snapshot is them, so nothing is sent)
    cur = np.frombuffer(data, dtype=np.uint8) if e.arr.flags.writeable else _bytes_of(e.arr)
    if e.snap.shape == cur.shape and e.snap.flags.writeable:
        np.copyto(e.snap, cur)  # the snapshot's memory again, not a fresh copy
    else:
        e.snap = _snapshot(cur)
    return True
