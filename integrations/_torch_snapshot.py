"""The torch half of background saving: copy a state's tensors into reusable host buffers.

:class:`TorchStager` finds the tensors of a state (a state dict, a Lightning checkpoint dict:
tensors nested in mappings, lists and tuples) and copies each tensor *storage* once into a
host buffer, so tensors that share a storage (tied weights, views) still share it: the file
``torch.save`` writes from the copy is byte for byte the one it would write from the state.
Everything that is not a tensor is deep-copied. Buffers are reused by the next snapshot when
the storage sizes match (``copy_`` into the previous buffers).

CUDA storages go into pinned buffers, copied on a side stream with ``non_blocking=True``; the
current stream then waits on the side stream (the optimizer's next write waits for the copy
on the GPU, not on the host), and the writer synchronises on an event recorded after the
copy before it serialises. A tagger registered with ``torch.serialization.register_package``
names those pinned buffers by the CUDA device they came from, so the file records the same
locations as a ``torch.save`` of the GPU tensors (``torch.load`` puts them back on the GPU).
"""

from __future__ import annotations

import copy
import ctypes
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from modelbook.integrations._background import Write

_PLAIN = (torch.Tensor, torch.nn.Parameter)
#: How a staged state is written: ``save(staged, path)`` (default ``torch.save``).
Save = Callable[[Any, Path], None]


@dataclass
class TorchBuffers:
    """Host buffers (one ``uint8`` tensor per storage) and the side streams of CUDA copies."""

    storages: list[torch.Tensor] = field(default_factory=list)
    streams: dict[int, Any] = field(default_factory=dict)  # CUDA device index -> Stream

    @property
    def nbytes(self) -> int:
        return sum(b.numel() for b in self.storages)


class TorchStager:
    """Stages one state's tensors into host buffers (see the module docstring).

    Use :meth:`of`, which returns None for a state holding tensors it cannot copy exactly
    (sparse, quantized, nested, meta or subclassed tensors, tensors on other devices, or
    with Python attributes): such a state is saved on the training thread. The writer
    :meth:`stage` returns calls ``save(staged, path)`` (``torch.save`` unless told).

    Example:
        >>> import io, torch
        >>> state = {"w": torch.ones(4), "tied": None, "step": 3}
        >>> state["tied"] = state["w"]
        >>> stager = TorchStager.of(state)
        >>> buffers, write = stager.stage(None)
        >>> state["w"].add_(1)  # training goes on: the copy keeps the values staged
        tensor([2., 2., 2., 2.])
        >>> staged = stager.staged
        >>> staged["w"].tolist(), staged["tied"] is staged["w"], buffers.nbytes
        ([1.0, 1.0, 1.0, 1.0], True, 16)
    """

    def __init__(self, state: Any, tensors: list[torch.Tensor], save: Save = torch.save) -> None:
        self.state, self.tensors, self.save = state, tensors, save
        self.storages: dict[int, torch.UntypedStorage] = {}  # by StorageImpl, first seen first
        for tensor in tensors:
            storage = tensor.untyped_storage()
            self.storages.setdefault(storage._cdata, storage)
        self.staged: Any = None

    @classmethod
    def of(cls, state: Any, save: Save = torch.save) -> TorchStager | None:
        """A stager for ``state``, or None when it holds a tensor it cannot copy exactly."""
        tensors = list(_tensors(state, set()))
        if not all(_plain(t) for t in tensors):
            return None
        return cls(state, tensors, save)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.storages.values())

    def stage(self, buffers: TorchBuffers | None) -> tuple[TorchBuffers, Write]:
        """Copy into ``buffers`` (reused where sizes match); return them and the writer."""
        previous = buffers.storages if buffers is not None else []
        buffers = TorchBuffers(streams=buffers.streams if buffers is not None else {})
        events: list[Any] = []
        copies: dict[int, torch.Tensor] = {}
        moves: list[tuple[int, int, int]] = []  # (to, from, bytes) of the CPU storages
        for index, (key, storage) in enumerate(self.storages.items()):
            cuda = storage.device.type == "cuda"
            old = previous[index] if index < len(previous) else None
            fits = old is not None and old.numel() == storage.nbytes() and old.is_pinned() == cuda
            buffer = old if old is not None and fits else _host_buffer(storage.nbytes(), cuda)
            source = torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage)
            if cuda:
                events.append(_copy_on_side_stream(buffer, source, buffers.streams))
                _remember_device(buffer, storage.device.index or 0)
            elif storage.nbytes():
                moves.append((buffer.data_ptr(), source.data_ptr(), storage.nbytes()))
            buffers.storages.append(buffer)
            copies[key] = buffer
        _memmove_all(moves)
        memo: dict[int, Any] = {id(t): _rebuild(t, copies) for t in self.tensors}
        self.staged = copy.deepcopy(self.state, memo)
        return buffers, partial(_write, self.save, self.staged, events)


#: Below this many bytes a snapshot is copied by the training thread alone.
PARALLEL_FROM = 64 * 1024 * 1024
_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _memmove_all(moves: list[tuple[int, int, int]]) -> None:
    """Copy every ``(to, from, bytes)`` range: plain ``memmove``s (GIL released; twice as fast
    as ``copy_`` on the machines tried), split into equal shares over the CPUs this process
    may use (at most 4) when there is enough to copy. The training thread waits for the copy
    anyway, so the stall shrinks with the memory bandwidth one core cannot use alone (1 GiB
    here: 0.11 s on one thread, 0.065 s on two)."""
    total = sum(size for _, _, size in moves)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(4, cpus or 1)
    if total < PARALLEL_FROM or workers < 2:
        _memmove_share(moves)
        return
    share, shares, current, filled = -(-total // workers), [], [], 0
    for to, source, size in moves:  # cut the ranges into `workers` shares of ~equal bytes
        done = 0
        while done < size:
            piece = min(size - done, share - filled)
            current.append((to + done, source + done, piece))
            done, filled = done + piece, filled + piece
            if filled == share:
                shares.append(current)
                current, filled = [], 0
    if current:
        shares.append(current)
    pool = _helper_pool(workers - 1)
    pending = [pool.submit(_memmove_share, part) for part in shares[1:]]
    _memmove_share(shares[0])
    for future in pending:
        future.result()


def _memmove_share(part: list[tuple[int, int, int]]) -> None:
    for to, source, size in part:
        ctypes.memmove(to, source, size)


def _helper_pool(size: int) -> ThreadPoolExecutor:
    """The threads that copy beside the training thread (made once, at its priority)."""
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(size, thread_name_prefix="modelbook-copy")
        return _helpers


def _write(save: Save, staged: Any, events: list[Any], path: Path) -> None:
    for event in events:  # the device-to-host copies are done
        event.synchronize()
    save(staged, path)


def _tensors(obj: Any, seen: set[int]) -> Iterator[torch.Tensor]:
    """The tensors in ``obj``'s nested mappings, lists and tuples, each once."""
    if isinstance(obj, torch.Tensor):
        if id(obj) not in seen:
            seen.add(id(obj))
            yield obj
        return
    if isinstance(obj, Mapping):
        children: Any = obj.values()
    elif isinstance(obj, (list, tuple)):
        children = obj
    else:
        return
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for child in children:
        yield from _tensors(child, seen)


def _plain(tensor: torch.Tensor) -> bool:
    """A dense tensor on the CPU or a CUDA device that ``torch.save`` writes as its storage."""
    return (
        type(tensor) in _PLAIN
        and tensor.layout == torch.strided
        and tensor.device.type in ("cpu", "cuda")
        and not tensor.is_quantized
        and not tensor.is_nested
        and not tensor.is_conj()
        and not tensor.is_neg()
        and not getattr(tensor, "__dict__", None)
        and (tensor.is_leaf or not tensor.requires_grad)
    )


def _host_buffer(nbytes: int, pinned: bool) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)


def _rebuild(tensor: torch.Tensor, copies: dict[int, torch.Tensor]) -> torch.Tensor:
    """``tensor`` as a view of the copy of its storage (same offset, size and stride)."""
    buffer = copies[tensor.untyped_storage()._cdata]
    view = torch.empty(0, dtype=tensor.dtype).set_(
        buffer.untyped_storage(), tensor.storage_offset(), tensor.size(), tensor.stride()
    )
    if isinstance(tensor, torch.nn.Parameter):
        return torch.nn.Parameter(view, requires_grad=tensor.requires_grad)
    return view.requires_grad_(tensor.requires_grad)


def _copy_on_side_stream(buffer: torch.Tensor, source: torch.Tensor, streams: dict) -> Any:
    """Copy ``source`` (CUDA) into the pinned ``buffer`` on a side stream; later work on the
    current stream waits for it; returns the event marking its end."""
    device = source.device
    side = streams.get(device.index)
    if side is None:
        side = streams[device.index] = torch.cuda.Stream(device=device)
    current = torch.cuda.current_stream(device)
    side.wait_stream(current)  # the copy sees every write queued before the snapshot
    with torch.cuda.stream(side):
        buffer.copy_(source, non_blocking=True)
        source.record_stream(side)  # its memory is not reused before the copy is done
    current.wait_stream(side)  # the optimizer's next write waits for the copy, on the GPU
    event = torch.cuda.Event()
    event.record(side)
    return event


# -- CUDA locations ---------------------------------------------------------------------------
_devices: dict[int, int] = {}  # data_ptr of a pinned buffer -> the CUDA index it copies
_tagger_lock = threading.Lock()


def _remember_device(buffer: torch.Tensor, index: int) -> None:
    """Tag ``buffer`` as a copy from CUDA device ``index`` for as long as it lives."""
    pointer = buffer.data_ptr()
    with _tagger_lock:
        _register_tagger()
        if pointer not in _devices:
            weakref.finalize(buffer, _devices.pop, pointer, None)
        _devices[pointer] = index


_registered = False


def _register_tagger() -> None:
    """Name staged pinned buffers by their CUDA device in the files ``torch.save`` writes
    (priority 9: asked before the CPU tagger; it answers None for every other storage)."""
    global _registered
    if _registered:
        return
    _registered = True

    def tagger(storage: Any) -> str | None:
        if storage.device.type != "cpu" or not _devices:
            return None
        index = _devices.get(storage.data_ptr())
        return None if index is None else f"cuda:{index}"

    torch.serialization.register_package(9, tagger, lambda storage, location: None)
