"""The trainer's side of ``POST /update_weights_from_ipc``: CUDA IPC handles of PyTorch tensors, sent as JSON."""

from __future__ import annotations

import base64
import mmap
import os
import struct
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

NamedTensors = Union[Mapping[str, Any], Iterable[Tuple[str, Any]]]

HANDLE_BYTES = 64

# PyTorch's reference counters of shared CUDA storages: int64 slots in a shared-memory file, after the 64-byte header
# its RefcountedMapAllocator keeps at the start of every mapping.
REF_COUNTER_HEADER_BYTES = 64
SHARED_MEMORY_DIR = "/dev/shm"


def ipc_weights_request(named_tensors: NamedTensors, weight_version: Optional[str] = None, abort_all_requests: bool = False,
                        counters: Optional[List[Tuple[bytes, int]]] = None) -> Dict[str, Any]:
    """
    The body of ``/update_weights_from_ipc`` for ``named_tensors`` (a dict or ``(name, tensor)`` pairs, names as in the
    Hugging Face checkpoint): per tensor its dtype, shape, the base64 of the ``cudaIpcMemHandle_t`` of the allocation
    holding it (``tensor.untyped_storage()._share_cuda_()``), where it starts in that allocation (``offset_bytes``: the
    storage's offset in the allocation plus ``storage_offset() * element_size()``) and its GPU. Each tensor must be a
    contiguous bfloat16 CUDA tensor (``t.to(torch.bfloat16).contiguous()`` makes one); a ValueError names the first
    that is not. The tensors must stay alive, unchanged, until the request has been answered.

    Each storage is shared once, however many tensors view it. Sharing gives each storage a PyTorch reference counter
    that keeps it allocated until released; ``counters``, when given, receives them, for :func:`release_shared_tensors`
    once the engine has answered (:meth:`Client.update_weights_from_ipc` does both).
    """
    items = list(named_tensors.items()) if isinstance(named_tensors, Mapping) else list(named_tensors)
    if not items:
        raise ValueError("named_tensors is empty: give at least one (name, tensor)")
    for name, tensor in items:
        _check(str(name), tensor)
    shared_storages: Dict[Tuple[int, int], Tuple[Any, ...]] = {}
    tensors: List[Dict[str, Any]] = []
    for name, tensor in items:
        storage = tensor.untyped_storage()
        key = (int(tensor.device.index or 0) if hasattr(tensor, "device") else 0, int(storage.data_ptr()))
        shared = shared_storages.get(key)
        if shared is None:
            shared = storage._share_cuda_()
            shared_storages[key] = shared
            if counters is not None and len(shared) > 5 and shared[4] is not None:
                counters.append((shared[4], int(shared[5])))
        tensors.append(_describe(str(name), tensor, shared))
    body: Dict[str, Any] = {"tensors": tensors, "abort_all_requests": bool(abort_all_requests)}
    if weight_version is not None:
        body["weight_version"] = str(weight_version)
    return body


def cuda_ipc_mem_handle(name: str, handle: bytes) -> bytes:
    """
    The ``cudaIpcMemHandle_t`` in a storage's shared handle. Recent PyTorch writes ``[version byte][type byte][payload]``
    (type ``c``: a ``cudaMalloc`` block followed by its 64-byte handle; ``e``: an expandable segment, shared another
    way); older PyTorch wrote the 64 bytes alone.
    """
    if len(handle) == HANDLE_BYTES:
        return handle
    if len(handle) == HANDLE_BYTES + 2 and handle[1:2] == b"c":
        return handle[2:]
    if len(handle) >= 2 and handle[1:2] == b"e":
        raise ValueError(
            f"tensor {name!r} lives in one of PyTorch's expandable segments, which CUDA IPC handles cannot share: run the "
            "trainer without expandable_segments (PYTORCH_CUDA_ALLOC_CONF)")
    raise ValueError(f"tensor {name!r}: its storage's shared handle has {len(handle)} bytes, neither a cudaIpcMemHandle_t "
                     f"({HANDLE_BYTES}) nor PyTorch's versioned form of one ({HANDLE_BYTES + 2})")


def _check(name: str, tensor: Any) -> None:
    if not getattr(tensor, "is_cuda", False):
        raise ValueError(f"tensor {name!r} is not on a CUDA device: only CUDA tensors can be shared through IPC")
    if str(tensor.dtype) != "torch.bfloat16":
        raise ValueError(f"tensor {name!r} is {tensor.dtype}, not torch.bfloat16: send t.to(torch.bfloat16).contiguous()")
    if not tensor.is_contiguous():
        raise ValueError(f"tensor {name!r} is not contiguous: send t.contiguous()")


def _describe(name: str, tensor: Any, shared: Tuple[Any, ...]) -> Dict[str, Any]:
    device, handle, _storage_bytes, storage_offset_bytes = shared[0], shared[1], shared[2], shared[3]
    handle = cuda_ipc_mem_handle(name, bytes(handle))
    return {
        "name": name,
        "dtype": "bfloat16",
        "shape": [int(d) for d in tensor.shape],
        "ipc_handle": base64.b64encode(handle).decode("ascii"),
        "offset_bytes": int(storage_offset_bytes) + int(tensor.storage_offset()) * int(tensor.element_size()),
        "device": int(device),
    }


def release_shared_tensors(counters: Iterable[Tuple[bytes, int]], shared_memory_dir: str = SHARED_MEMORY_DIR) -> int:
    """
    Tells PyTorch that the engine is done with the storages behind ``counters`` (filled by :func:`ipc_weights_request`),
    as a PyTorch consumer does when it frees what it received: each storage's reference counter, in PyTorch's
    shared-memory counter file, goes from 1 to 0. Without this PyTorch keeps every storage it ever shared until the
    process ends, so tensors made only to be sent (a bf16 copy of fp32 weights, a flat bucket) would never be freed.
    Call it only after the engine has answered the update (it has then copied the weights and closed its handles).
    Counters already at 0 are left alone. Returns how many counters it released.
    """
    released = 0
    for counter_file, index in dict.fromkeys(counters):
        released += _decrement_counter(shared_memory_dir, counter_file, index)
    return released


def _decrement_counter(shared_memory_dir: str, counter_file: Any, index: int) -> int:
    name = counter_file.decode("ascii") if isinstance(counter_file, bytes) else str(counter_file)
    path = os.path.join(shared_memory_dir, name.lstrip("/"))
    position = REF_COUNTER_HEADER_BYTES + index * 8
    try:
        with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as mapped:
            if position + 8 > len(mapped):
                return 0
            (value,) = struct.unpack_from("<q", mapped, position)
            if value <= 0:
                return 0
            struct.pack_into("<q", mapped, position, value - 1)
            return 1
    except FileNotFoundError:
        return 0
