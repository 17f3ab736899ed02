"""How well the learner uses its device: the peak it is measured against, and the model FLOPs of a step.

MFU (model FLOPs utilisation) = model FLOPs of the step / (step time x peak FLOP/s of the devices). Model FLOPs
count what the model needs, not what the engine spends: 6 x params x tokens per trained pass (forward 2, backward
4) and 2 x params x tokens per forward-only pass (old or reference log-probs); recomputation under gradient
checkpointing or chunked log-probs is not counted (that would be hardware FLOPs utilisation), nor is attention's
T^2 term (small at the lengths trained here). The peak: a GPU's dense bf16 figure from its data sheet when the
device is known, else a timed matmul in the learner's dtype, measured once when the actor starts.
"""

from __future__ import annotations

import time

# dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets (SXM parts)
GPU_BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def measure_peak(device: str = "cpu", dtype: str = "float32", n: int = 1024, seconds: float = 0.3) -> float:
    """FLOP/s of an n x n matmul on `device` in `dtype`, best of repeated timings over about `seconds`."""
    import torch

    dt = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    dev = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
    a, b = torch.randn(n, n, dtype=dt, device=dev), torch.randn(n, n, dtype=dt, device=dev)
    a @ b  # warm-up (and the kernel choice)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def peak_flops(device: str, dtype: str) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from) of one learner device."""
    if device == "cuda" and dtype == "bfloat16":
        import torch

        name = torch.cuda.get_device_name(0)
        for key, flops in GPU_BF16_PEAK.items():
            if key in name:
                return flops, f"{name} data sheet (dense bf16)"
    flops = measure_peak(device, dtype, n=4096 if device == "cuda" else 1024)
    return flops, f"timed {dtype} matmul on {device}"


def model_flops(params: int, tokens: float, trained_passes: int = 1, forward_passes: int = 0) -> float:
    """Model FLOPs of `trained_passes` forward+backward and `forward_passes` forward-only passes over `tokens`."""
    return params * tokens * (6 * trained_passes + 2 * forward_passes)
