"""Assignment engines: the nearest centroid of each row of a float32 block, on CPU or GPU.

====================  ==============================================================
``faiss-cpu``         ``faiss.IndexFlatL2`` (BLAS, all OpenMP threads): the CPU default
``faiss-gpu``         one ``faiss.GpuIndexFlatL2`` per GPU, queries split over them
                      (``faiss.IndexReplicas``): the default when FAISS has GPU support
                      and GPUs are visible
``torch-cpu``         :func:`semanticodec.kmeans.assign` (blocked matrix product), the semantic
                      quantizer's exact formula
``torch-cuda``        the same on a CUDA device: the default when GPUs are visible but
                      the installed FAISS has no GPU support
====================  ==============================================================

FAISS is optional for the torch engines (a machine without it, such as a GPU host with
no wheel for it, still trains with ``torch-cuda`` or ``torch-cpu``).

The choice is never silent: :func:`select_engine` returns an engine whose ``description``
says what runs where and why, and a GPU engine that cannot be built raises instead of
falling back to the CPU (the GPU wheel of FAISS would otherwise quietly run on the CPU).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from semanticodec.kmeans.assign import assign

try:
    import faiss
except ImportError:
    faiss = None

ENGINES = ("auto", "faiss-cpu", "faiss-gpu", "torch-cpu", "torch-cuda")


class Engine(Protocol):
    """Nearest-centroid search over a fixed set of centroids."""

    description: str
    torch_device: torch.device

    def set_centroids(self, centroids: np.ndarray) -> None:
        """Use float32 ``[K, D]`` centroids for the following searches."""

    def search(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``[M, D]`` → (int64 ids ``[M]``, float32 squared distances ``[M]``)."""


def faiss_gpu_count() -> int:
    """GPUs usable by the installed FAISS (0 for a CPU-only build or without FAISS)."""
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


class FaissCpuEngine:
    """Exact L2 search with ``faiss.IndexFlatL2`` on the CPU."""

    torch_device = torch.device("cpu")

    def __init__(self, reason: str = "requested"):
        if faiss is None:
            raise ValueError("engine 'faiss-cpu': FAISS is not installed (pip install faiss-cpu, or use engine torch-cpu)")
        self.description = f"faiss-cpu (IndexFlatL2, {faiss.omp_get_max_threads()} threads; {reason})"
        self.index: faiss.Index | None = None

    def set_centroids(self, centroids: np.ndarray) -> None:
        self.index = faiss.IndexFlatL2(centroids.shape[1])
        self.index.add(np.ascontiguousarray(centroids, dtype=np.float32))

    def search(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        return ids[:, 0].astype(np.int64), dist[:, 0]


class FaissGpuEngine:
    """Exact L2 search with ``faiss.GpuIndexFlatL2`` on the given GPUs (queries split over them)."""

    def __init__(self, devices: list[int], reason: str = "requested"):
        available = faiss_gpu_count()
        if available == 0:
            raise ValueError("engine 'faiss-gpu': the installed FAISS has no GPU support or sees no GPU")
        bad = [d for d in devices if not 0 <= d < available]
        if not devices or bad:
            raise ValueError(f"engine 'faiss-gpu': GPU ids {devices} are not among the {available} visible GPUs")
        self.devices = devices
        self.resources = [faiss.StandardGpuResources() for _ in devices]
        self.description = f"faiss-gpu (GpuIndexFlatL2 on GPU {', '.join(map(str, devices))}; {reason})"
        self.torch_device = torch.device(f"cuda:{devices[0]}" if torch.cuda.is_available() else "cpu")
        self.parts: list[faiss.Index] = []
        self.index: faiss.Index | None = None

    def set_centroids(self, centroids: np.ndarray) -> None:
        dim = centroids.shape[1]
        self.parts = []
        for res, device in zip(self.resources, self.devices):
            config = faiss.GpuIndexFlatConfig()
            config.device = device
            part = faiss.GpuIndexFlatL2(res, dim, config)
            part.add(np.ascontiguousarray(centroids, dtype=np.float32))
            self.parts.append(part)
        if len(self.parts) == 1:
            self.index = self.parts[0]
        else:
            self.index = faiss.IndexReplicas(dim)
            for part in self.parts:
                self.index.addIndex(part)

    def search(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        return ids[:, 0].astype(np.int64), dist[:, 0]


class TorchEngine:
    """Blocked-matmul search (:func:`semanticodec.kmeans.assign`) on a torch device."""

    def __init__(self, device: torch.device, reason: str = "requested", batch_size: int = 4096):
        self.torch_device = device
        self.batch_size = batch_size
        self.description = f"torch-{device.type} ({device}; {reason})"
        self.centroids: torch.Tensor | None = None

    def set_centroids(self, centroids: np.ndarray) -> None:
        self.centroids = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32)).to(self.torch_device)

    def search(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.torch_device)
        ids, dist = assign(x, self.centroids, batch_size=self.batch_size)
        return ids.cpu().numpy(), dist.cpu().numpy()


def select_engine(name: str = "auto", local_rank: int | None = None) -> Engine:
    """Build the engine ``name`` (one of :data:`ENGINES`).

    ``local_rank`` (set under ``torchrun``) restricts a GPU engine to that one GPU, so each
    process of a multi-GPU run uses its own device; otherwise ``faiss-gpu`` uses every GPU
    FAISS sees and ``torch-cuda`` uses ``cuda:0``.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    faiss_gpus = faiss_gpu_count()
    cuda = torch.cuda.is_available()
    if name == "auto":
        if faiss_gpus > 0:
            name, reason = "faiss-gpu", "auto: FAISS has GPU support and sees GPUs"
        elif cuda:
            name, reason = "torch-cuda", "auto: CUDA is available but FAISS sees no GPU (CPU-only build or CUDA mismatch)"
        elif faiss is not None:
            name, reason = "faiss-cpu", "auto: no GPU visible"
        else:
            name, reason = "torch-cpu", "auto: no GPU visible and FAISS is not installed"
    else:
        reason = "requested"
    if name == "faiss-cpu":
        return FaissCpuEngine(reason)
    if name == "faiss-gpu":
        devices = [local_rank] if local_rank is not None else list(range(faiss_gpus))
        return FaissGpuEngine(devices, reason)
    if name == "torch-cpu":
        return TorchEngine(torch.device("cpu"), reason)
    if not cuda:
        raise ValueError("engine 'torch-cuda': torch sees no CUDA device")
    return TorchEngine(torch.device(f"cuda:{local_rank or 0}"), reason)
