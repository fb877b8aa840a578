"""Collective operations for data-parallel k-means over ``torch.distributed`` (gloo or NCCL).

Launch with ``torchrun --nproc_per_node G [--nnodes M ...] -m semanticodec.kmeans train ...``: the command
initialises the process group (NCCL when CUDA is available, else gloo). In a program that has
already called ``torch.distributed.init_process_group``, :func:`semanticodec.kmeans.train` joins that group.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


class Comm:
    """One process: every collective is the identity."""

    rank = 0
    world_size = 1
    local_rank: int | None = None

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum of ``array`` over all ranks (int64 or float64)."""
        return array

    def allreduce_max(self, value: float) -> float:
        """Maximum of ``value`` over all ranks."""
        return value

    def broadcast(self, array: np.ndarray) -> np.ndarray:
        """Rank 0's ``array`` on every rank (all ranks pass an array of the same shape and dtype)."""
        return array


class TorchComm(Comm):
    """All ranks of the default ``torch.distributed`` process group."""

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        nccl = dist.get_backend() == "nccl"
        self.device = torch.device(f"cuda:{self.local_rank}") if nccl else torch.device("cpu")

    def _run(self, array: np.ndarray, op) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        op(tensor)
        return tensor.cpu().numpy()

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        return self._run(array, lambda t: dist.all_reduce(t, op=dist.ReduceOp.SUM))

    def allreduce_max(self, value: float) -> float:
        return float(self._run(np.array([value], dtype=np.float64), lambda t: dist.all_reduce(t, op=dist.ReduceOp.MAX))[0])

    def broadcast(self, array: np.ndarray) -> np.ndarray:
        return self._run(array, lambda t: dist.broadcast(t, src=0))


def get_comm(distributed: bool | None = None) -> Comm:
    """The communicator for a run: ``None`` means distributed iff a process group is initialised."""
    active = dist.is_available() and dist.is_initialized()
    if distributed and not active:
        raise ValueError("distributed=True but torch.distributed is not initialised (launch with torchrun)")
    if (distributed is None and active) or distributed:
        return TorchComm()
    return Comm()
