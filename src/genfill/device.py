"""Where tensors run and how fast: the device choice, bf16 autocast, and whether to take the fast path."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from genfill.errors import GenfillError


def pick_device(name: str = "auto") -> torch.device:
    """auto (CUDA, else MPS, else CPU) or an explicit cpu | cuda | cuda:N | mps that must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise GenfillError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenfillError("device cuda was asked for, but no CUDA GPU is available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise GenfillError("device mps was asked for, but MPS is not available")
    return dev


def fast_path(setting: bool | None, device: torch.device) -> bool:
    """Whether to train on the fast path: `train.fast` when set, by default on CUDA only."""
    if setting is not None and not isinstance(setting, bool):
        raise TypeError(f"fast_path takes the train.fast setting (bool or None), got {type(setting).__name__}")
    return setting if setting is not None else device.type == "cuda"


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (where the GPU has bf16) and CPU; nothing elsewhere or when disabled."""
    if not enabled or device.type not in ("cuda", "cpu"):
        return nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return nullcontext()  # fp16 would need loss scaling; fp32 is the honest fallback
    return torch.autocast(device.type, dtype=torch.bfloat16)


THREADS_ENV = "GENFILL_THREADS"
MAX_DEFAULT_THREADS = 4  # see default_threads


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, so a container's or taskset's limit counts)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """genfill's CPU thread count when neither --threads nor GENFILL_THREADS nor OMP_NUM_THREADS says: the
    cores left idle (usable cores minus the busy ones: the 1-minute load average, or the threads runnable right
    now where that is fewer; at least 1), at most MAX_DEFAULT_THREADS.
    torch's own default takes every core, and when other processes keep them busy its threads wait on each
    other: on a 2-core machine under load average ~10, one 512x512 fill took 1.4 s with 1 thread and 17 s
    with 2, a unet-faces64 training step 5.3 s against 28 s (benchmarks/results/threads.md). Small models
    (64 px windows, batch 32) gain little beyond a few threads even on an idle machine, hence the cap."""
    import os

    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average (Windows): assume the cores are free
        busy = 0
    now = runnable_now()
    if now is not None:  # the 1-minute average lags: right after `make test` it still counts the finished run
        busy = min(busy, now)
    return max(1, min(usable_cores() - busy, MAX_DEFAULT_THREADS))


def runnable_now(samples: int = 3, gap_s: float = 0.01) -> int | None:
    """Other threads runnable right now (Linux: /proc/loadavg's running count, this process's own one taken
    off), the most of a few samples `gap_s` apart so a momentary lull does not read as idle; None elsewhere."""
    import time

    seen = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as fh:
                seen.append(int(fh.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(gap_s)
    return max(0, *seen)


MAX_THREADS = 4096


def thread_count(arg: int | None) -> int | None:
    """The thread count asked for: --threads, else $GENFILL_THREADS, else None (OMP_NUM_THREADS is then torch's
    own business when set, genfill's default when not). A value that is not a positive integer is a GenfillError."""
    import os

    for value, source in ((arg, "--threads"), (os.environ.get(THREADS_ENV) or None, THREADS_ENV)):
        if value is None:
            continue
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = 0
        if not 1 <= n <= MAX_THREADS or str(value).strip() != str(n):  # torch takes a 32-bit count
            raise GenfillError(f"{source}: must be a whole number of threads from 1 to {MAX_THREADS}, got "
                               f"{str(value)[:40]!r}")
        return n
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return default_threads()


def set_threads(arg: int | None = None) -> int:
    """Apply the thread count (see thread_count) to torch and OpenCV; returns the count in effect."""
    n = thread_count(arg)
    if n is not None:
        torch.set_num_threads(n)
        try:
            import cv2

            cv2.setNumThreads(n)
        except ImportError:  # pragma: no cover - a dependency, but the CLI must not die on its absence
            pass
    return torch.get_num_threads()
