"""Data parallelism under `torchrun`: process group setup, the rank's device, and the few collectives the engine needs.

`torchrun --standalone --nproc_per_node N -m plm ...` sets RANK / WORLD_SIZE / LOCAL_RANK; without
them everything here is a no-op for one process. CPU ranks use gloo (so a 2-process test runs in
CI), CUDA ranks NCCL with one GPU per local rank.

FSDP2 (`train.parallel: fsdp`): `shard_model` applies `fully_shard` to every transformer block, then to
the root (embeddings, final norm and heads, so a tied LM head stays in one group with its embedding);
parameters become DTensors sharded on dim 0. `full_state_dicts` gathers model and optimizer state to
rank 0's CPU in the one-process formats (`model.state_dict()` keys, `optimizer.state_dict()` indices),
so checkpoints and model folders are the same files as without FSDP; `load_sharded_optimizer` shards
such an optimizer state back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, exports and metrics."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: the local rank's GPU when CUDA is present, else CPU; `cuda` fails clearly without it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the torchrun job described by the environment (or return a one-process context)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, device)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (torchrun expects every rank to)."""
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of `t` over ranks (in place); identity for one process."""
    if ctx.active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj` (index = rank) on every rank; [obj] for one process."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def shard_model(model: nn.Module, blocks: nn.ModuleList, device: torch.device, compile_blocks: bool = False) -> None:
    """FSDP2 in place: `fully_shard` per block (each all-gathered just before it runs, freed after), then the root.

    On CUDA parameters are all-gathered and computed in bf16 with gradients reduced in fp32
    (`MixedPrecisionPolicy`); on CPU everything stays fp32. `compile_blocks`: `torch.compile` each block
    (before sharding, so that FSDP's hooks stay outside the compiled graphs; the state-dict names are unchanged).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy()
    if device.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in blocks:
        if compile_blocks:
            block.compile()
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """An FSDP model's full `state_dict()` and its optimizer's full `state_dict()` (parameters numbered as
    `optimizer.state_dict()` numbers them), on rank 0's CPU; empty dicts on the other ranks. Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    by_name = get_optimizer_state_dict(model, optimizer, options=options)
    if not model_state:
        return {}, {}
    names = [name for group in by_name["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(names)}
    optim_state = {
        "state": {index[name]: value for name, value in by_name["state"].items()},
        "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]],
    }
    return model_state, optim_state


def load_sharded_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full `optimizer.state_dict()` (as `full_state_dicts` returns it; every rank holds it) into the
    optimizer of an FSDP model, each rank keeping its shard of every state tensor."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {id(p): n for n, p in model.named_parameters()}
    ordered = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name = {
        "state": {ordered[int(i)]: value for i, value in state["state"].items()},
        "param_groups": [{**g, "params": [ordered[int(i)] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
