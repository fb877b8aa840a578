"""Joining the process group that ``torchrun`` describes, for every data-parallel command
(``tokenize``, ``kmeans train``, ``train``): one process per device, NCCL on CUDA, gloo on CPU."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def join_torchrun(device: str | torch.device | None = None) -> tuple[torch.device, bool]:
    """This process's device, and whether this call created the process group.

    The device is ``device`` (default: CUDA when available, else CPU). Under ``torchrun``
    (``WORLD_SIZE`` > 1) a CUDA device becomes ``cuda:LOCAL_RANK`` (and the current CUDA
    device), and the default process group is initialised unless it already is: NCCL on CUDA,
    else gloo. Alone, nothing else happens. The caller destroys a group it created.
    """
    target = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return target, False
    if target.type == "cuda":
        target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(target)
    if dist.is_initialized():
        return target, False
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return target, True
