"""Multi-process training and prediction under torchrun (DistributedDataParallel, or FSDP2 with
--parallel fsdp).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything runs in one process.
Backend: nccl when the processes use CUDA (each on cuda:LOCAL_RANK), gloo on CPU. A single
process started by torchrun (`--nproc_per_node 1`, TORCHELASTIC_RUN_ID set) runs the DDP path
too, with a process group of one, as torchrun users expect (benchmarks/gpu_check.py compares it
with a plain run).

Sharding: each epoch's order is a pure function of (seed, epoch), so every rank computes the
same order; it is padded (wrapping around) to a multiple of the world size and rank r takes
positions r, r + W, r + 2W, ... With `--batch-size B` the GLOBAL batch (B must be divisible by
W; each rank runs B / W), the ranks' local batches together are exactly the single-process
batch, and DDP's gradient average equals the single-process gradient for models without
BatchNorm (BatchNorm statistics are per rank, as usual with DDP). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kdfair_cli.env import env_int
from kdfair_cli.errors import KdfairError
from kdfair_cli.train.device import resolve_device


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False  # this call started the process group (and ends it)

    @property
    def active(self) -> bool:
        """Several processes, or a process group of one (torchrun --nproc_per_node 1)."""
        return self.world > 1 or self.backend is not None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def to_json(self) -> dict | None:
        return {"world_size": self.world, "backend": self.backend} if self.active else None


def setup(device_spec: str) -> tuple[DistEnv, torch.device]:
    """The process's rank/world and device; starts the process group under torchrun."""
    world = env_int("WORLD_SIZE", 1)
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return DistEnv(), resolve_device(device_spec)
    rank, local = env_int("RANK", 0), env_int("LOCAL_RANK", 0)
    spec = device_spec.strip().lower()
    use_cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise KdfairError(f"--device {device_spec}: CUDA is not available on this machine")
        if local >= torch.cuda.device_count():
            raise KdfairError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif spec in ("auto", "cpu"):
        device, backend = torch.device("cpu"), "gloo"
    else:
        raise KdfairError(f"--device {device_spec} is not supported under torchrun (use auto, cpu or cuda)")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend, device_id=device if use_cuda else None)
    return DistEnv(rank, world, local, backend, owns), device


def teardown(env: DistEnv) -> None:
    """End the process group this process started, after freeing what holds it (DDP's reducer)."""
    if env.owns_group and dist.is_initialized():
        import gc

        gc.collect()
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def check_batch_size(env: DistEnv, batch_size: int) -> None:
    if env.active and batch_size % env.world:
        raise KdfairError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                          f"{env.world} processes")


def shard(order: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """This rank's share of `order` (padded by wrapping around to a multiple of the world size)."""
    if not env.active:
        return order
    n = len(order)
    padded = -(-n // env.world) * env.world
    if padded > n:
        order = torch.cat([order, order[: padded - n]])
    return order[env.rank::env.world]


def all_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.active:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True if `flag` is set on any rank (so that all ranks stop at the same batch)."""
    if not env.active:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj, env: DistEnv) -> list:
    if not env.active:
        return [obj]
    out = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def is_sharded(model: torch.nn.Module) -> bool:
    """True for a model sharded with FSDP2's fully_shard."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def fsdp_shard(model: torch.nn.Module, units: list[torch.nn.Module]) -> torch.nn.Module:
    """Shard `model` over the process group with PyTorch's FSDP2 (fully_shard): each of `units`
    (the transformer blocks) is one all-gather unit, the rest (embeddings, final norm, head) the
    root's. In place; the module keeps its class and parameter names (as DTensor shards)."""
    from torch.distributed.fsdp import fully_shard

    for unit in units:
        fully_shard(unit)
    fully_shard(model)
    return model


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: torch.nn.Module, env: DistEnv) -> dict:
    """The model's full (gathered) state dict on rank 0; {} on the other ranks. Under FSDP every
    rank must call it (the gather is collective); unsharded, only rank 0 needs to."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=_full_options())
    return model.state_dict() if env.main else {}


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, env: DistEnv) -> dict:
    """The optimizer's full state on rank 0 (keyed by parameter name under FSDP); {} elsewhere."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=_full_options())
    return optimizer.state_dict() if env.main else {}


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                    optimizer_state: dict, env: DistEnv) -> None:
    """Load a full state (what full_model_state / full_optimizer_state saved) on every rank."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, set_model_state_dict, set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, model_state, options=options)
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
        return
    model.load_state_dict(model_state)
    optimizer.load_state_dict(optimizer_state)
