"""The request body of /update_weights_from_ipc built from tensor-like objects (no PyTorch), and the call against a
real CPU server, which refuses it naming --device cuda."""

import base64
import json
from pathlib import Path

import pytest

from routereplay_client import RouteReplayError, ipc_weights_request, release_shared_tensors


class FakeStorage:
    def __init__(self, device, handle, size_bytes, offset_bytes):
        self.shared = (device, handle, size_bytes, offset_bytes, b"ref-counter", 0, b"event", True)
        self.shares = 0

    def _share_cuda_(self):
        self.shares += 1
        return self.shared

    def data_ptr(self):
        return id(self)


class FakeTensor:
    """What ipc_weights_request reads from a torch.Tensor."""

    def __init__(self, shape, storage, storage_offset=0, dtype="torch.bfloat16", contiguous=True, is_cuda=True):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.is_cuda = is_cuda
        self._storage = storage
        self._storage_offset = storage_offset
        self._contiguous = contiguous

    def untyped_storage(self):
        return self._storage

    def storage_offset(self):
        return self._storage_offset

    def element_size(self):
        return 2

    def is_contiguous(self):
        return self._contiguous


HANDLE = bytes(range(64))


def test_each_tensor_is_described_with_its_handle_and_its_offset_in_the_allocation():
    storage = FakeStorage(1, HANDLE, 1 << 20, 4096)
    body = ipc_weights_request(
        {"model.norm.weight": FakeTensor([8], storage), "model.layers.0.self_attn.q_proj.weight": FakeTensor([4, 8], storage, storage_offset=100)},
        weight_version="step-3",
    )
    assert body["weight_version"] == "step-3" and body["abort_all_requests"] is False
    first, second = body["tensors"]
    assert first == {"name": "model.norm.weight", "dtype": "bfloat16", "shape": [8], "ipc_handle": base64.b64encode(HANDLE).decode(),
                     "offset_bytes": 4096, "device": 1}
    assert second["offset_bytes"] == 4096 + 100 * 2 and second["shape"] == [4, 8]
    assert json.loads(json.dumps(body)) == body


def test_pairs_are_accepted_in_order_and_a_missing_version_is_left_out():
    storage = FakeStorage(0, HANDLE, 64, 0)
    body = ipc_weights_request([("b", FakeTensor([2], storage)), ("a", FakeTensor([3], storage))], abort_all_requests=True)
    assert [t["name"] for t in body["tensors"]] == ["b", "a"]
    assert "weight_version" not in body and body["abort_all_requests"] is True


@pytest.mark.parametrize("tensor, said", [
    (FakeTensor([2], FakeStorage(0, HANDLE, 64, 0), dtype="torch.float32"), "torch.bfloat16"),
    (FakeTensor([2], FakeStorage(0, HANDLE, 64, 0), contiguous=False), "contiguous"),
    (FakeTensor([2], FakeStorage(0, HANDLE, 64, 0), is_cuda=False), "CUDA"),
    (FakeTensor([2], FakeStorage(0, b"short", 64, 0)), "64"),
    (FakeTensor([2], FakeStorage(0, b"\x02e" + HANDLE, 64, 0)), "expandable_segments"),
    (FakeTensor([2], FakeStorage(0, b"\x02x" + HANDLE, 64, 0)), "66"),
])
def test_a_tensor_that_cannot_be_shared_is_a_value_error_naming_it(tensor, said):
    with pytest.raises(ValueError, match=said) as error:
        ipc_weights_request({"model.layers.1.mlp.gate.weight": tensor})
    assert "'model.layers.1.mlp.gate.weight'" in str(error.value)


def test_the_versioned_handle_of_recent_pytorch_gives_its_cuda_handle():
    storage = FakeStorage(0, b"\x02c" + HANDLE, 64, 0)
    body = ipc_weights_request({"model.norm.weight": FakeTensor([8], storage)})
    assert base64.b64decode(body["tensors"][0]["ipc_handle"]) == HANDLE


def test_nothing_to_send_is_a_value_error():
    with pytest.raises(ValueError, match="empty"):
        ipc_weights_request({})


def test_the_cpu_server_refuses_naming_device_cuda_and_keeps_serving(client, info):
    hidden = json.loads((Path(info["model_path"]) / "config.json").read_text())["hidden_size"]
    tensor = FakeTensor([hidden], FakeStorage(0, HANDLE, 1 << 20, 0))
    with pytest.raises(RouteReplayError) as error:
        client.update_weights_from_ipc({"model.norm.weight": tensor}, weight_version="step-1")
    assert error.value.status == 400 and "update_weights_from_ipc needs --device cuda" in str(error.value)
    assert client.get("/health") == "OK\n"


def test_an_unknown_name_is_refused_naming_its_field(client):
    with pytest.raises(RouteReplayError) as error:
        client.update_weights_from_ipc([("model.norm.weight.typo", FakeTensor([1], FakeStorage(0, HANDLE, 64, 0)))])
    assert error.value.status == 400 and error.value.param == "tensors[0].name"
    assert "model.norm.weight.typo" in str(error.value)


def _counter_file(folder, name, values):
    path = folder / name
    path.write_bytes(b"\xff" * 64 + b"".join(v.to_bytes(8, "little", signed=True) for v in values))
    return path


def _counters(path):
    raw = path.read_bytes()[64:]
    return [int.from_bytes(raw[i:i + 8], "little", signed=True) for i in range(0, len(raw), 8)]


class CountedStorage(FakeStorage):
    def __init__(self, counter_file, index):
        super().__init__(0, HANDLE, 64, 0)
        self.shared = (0, HANDLE, 64, 0, counter_file, index, b"event", True)


def test_each_storage_is_shared_once_and_its_counter_kept_for_the_release():
    first, second = CountedStorage(b"/torch_7_1_0", 1), CountedStorage(b"/torch_7_1_0", 3)
    counters = []
    body = ipc_weights_request({"a": FakeTensor([2], first), "b": FakeTensor([2], first, storage_offset=2), "c": FakeTensor([2], second)},
                               counters=counters)
    assert (first.shares, second.shares) == (1, 1)
    assert counters == [(b"/torch_7_1_0", 1), (b"/torch_7_1_0", 3)]
    assert [t["offset_bytes"] for t in body["tensors"]] == [0, 4, 0]


def test_release_takes_each_counter_from_one_to_zero_once(tmp_path):
    path = _counter_file(tmp_path, "torch_7_1_0", [1, 1, 1, 5])
    assert release_shared_tensors([(b"/torch_7_1_0", 1), (b"/torch_7_1_0", 3), (b"/torch_7_1_0", 1)], shared_memory_dir=str(tmp_path)) == 2
    assert _counters(path) == [1, 0, 1, 4]


def test_a_counter_at_zero_stays_at_zero_and_a_missing_counter_file_is_skipped(tmp_path):
    path = _counter_file(tmp_path, "torch_7_1_0", [0])
    assert release_shared_tensors([(b"/torch_7_1_0", 0), (b"/torch_gone", 0)], shared_memory_dir=str(tmp_path)) == 0
    assert _counters(path) == [0]
