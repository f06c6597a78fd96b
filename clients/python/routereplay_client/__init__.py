"""The trainer's side of RouteReplay: a client for its HTTP API, the routing rows decoded from either wire form,
gathered across a multi-turn rollout, and converted to what Megatron-Core, slime and verl feed their routers."""

from .accumulate import RoutingAccumulator, accumulate
from .client import Client
from .errors import RouteReplayError
from .ipc import ipc_weights_request, release_shared_tensors
from .layers import expand_to_all_layers, select_layers
from .megatron import to_megatron_replay
from .serve_process import ServeProcess, cli_command
from .slime import to_slime
from .verl import to_verl
from .wire import decode_routed_experts, routing_start

__all__ = [
    "Client",
    "RouteReplayError",
    "RoutingAccumulator",
    "ServeProcess",
    "accumulate",
    "cli_command",
    "decode_routed_experts",
    "expand_to_all_layers",
    "ipc_weights_request",
    "release_shared_tensors",
    "routing_start",
    "select_layers",
    "to_megatron_replay",
    "to_slime",
    "to_verl",
]
