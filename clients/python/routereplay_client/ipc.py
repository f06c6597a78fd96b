"""The trainer's side of ``POST /update_weights_from_ipc``: CUDA IPC handles of PyTorch tensors, sent as JSON."""

from __future__ import annotations

import base64
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

NamedTensors = Union[Mapping[str, Any], Iterable[Tuple[str, Any]]]

HANDLE_BYTES = 64


def ipc_weights_request(named_tensors: NamedTensors, weight_version: Optional[str] = None, abort_all_requests: bool = False) -> Dict[str, Any]:
    """
    The body of ``/update_weights_from_ipc`` for ``named_tensors`` (a dict or ``(name, tensor)`` pairs, names as in the
    Hugging Face checkpoint): per tensor its dtype, shape, the base64 of the ``cudaIpcMemHandle_t`` of the allocation
    holding it (``tensor.untyped_storage()._share_cuda_()``), where it starts in that allocation (``offset_bytes``: the
    storage's offset in the allocation plus ``storage_offset() * element_size()``) and its GPU. Each tensor must be a
    contiguous bfloat16 CUDA tensor (``t.to(torch.bfloat16).contiguous()`` makes one); a ValueError names the first
    that is not. The tensors must stay alive, unchanged, until the request has been answered.
    """
    items = list(named_tensors.items()) if isinstance(named_tensors, Mapping) else list(named_tensors)
    if not items:
        raise ValueError("named_tensors is empty: give at least one (name, tensor)")
    tensors: List[Dict[str, Any]] = []
    for name, tensor in items:
        tensors.append(_describe(str(name), tensor))
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


def _describe(name: str, tensor: Any) -> Dict[str, Any]:
    if not getattr(tensor, "is_cuda", False):
        raise ValueError(f"tensor {name!r} is not on a CUDA device: only CUDA tensors can be shared through IPC")
    if str(tensor.dtype) != "torch.bfloat16":
        raise ValueError(f"tensor {name!r} is {tensor.dtype}, not torch.bfloat16: send t.to(torch.bfloat16).contiguous()")
    if not tensor.is_contiguous():
        raise ValueError(f"tensor {name!r} is not contiguous: send t.contiguous()")
    shared = tensor.untyped_storage()._share_cuda_()
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
