"""The engines: the pure step, the native CPU kernel, the compiled chunk, device placement and the driver."""

from ._chunk import chunk_function, unpack_spikes, xla_variant
from ._driver import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_STEPS, Chunk, Sink, default_chunk_steps, drive, run_chunks
from ._driver import _chunk_steps as chunk_steps
from ._mesh import (default_devices, initial_states, local_member_indices, member_mesh, param_axes,
                    place_on_mesh, process_blocks)
from ._devices import use_command_buffers, use_host_devices
from ._native import ENGINES, available, resolve_engine

__all__ = ["Chunk", "DEFAULT_CHUNK_BYTES", "DEFAULT_CHUNK_STEPS", "Sink", "drive", "ENGINES", "available", "chunk_function", "chunk_steps",
           "default_chunk_steps", "default_devices", "initial_states", "local_member_indices", "member_mesh",
           "param_axes", "place_on_mesh", "process_blocks", "resolve_engine", "run_chunks", "unpack_spikes",
           "use_command_buffers", "use_host_devices", "xla_variant"]
