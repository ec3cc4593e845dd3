"""Several processes through Hugging Face Accelerate, and one process without it.

Launched with `torchrun --nproc_per_node N -m titok ...` (or `accelerate launch` with a
multi-process config), generation and scoring split their batches round-robin across the
processes and gather the results in the original order; each batch keeps the seed it has in a
single-process run, so the synthetic data and scores equal a single-process run's. Evaluation
splits its examples the same way and computes the metrics from all of them. Training runs
data-parallel (DDP) through `accelerate.Accelerator`. Every process computes the same artifacts;
they are written atomically, and the adapter and checkpoints only by the main process.
Without a launcher (WORLD_SIZE unset or 1) nothing here creates a process group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

import torch

Item = TypeVar("Item")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_as_main() -> bool:
    """Whether the launcher made this the main process, read before any process group exists."""
    return os.environ.get("RANK", "0") == "0"


@cache
def state():  # -> accelerate.PartialState; made once per process, on first use
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def rank() -> int:
    return state().process_index if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def wait_for_everyone() -> None:
    if world_size() > 1:
        state().wait_for_everyone()


def device() -> torch.device:
    """This process's device: its GPU when there is one, else the CPU."""
    if world_size() > 1:
        return state().device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def finish() -> None:
    """End this process's part in the launch: wait for the others, then close the process group.

    A process that leaves with its process group open can abort in interpreter shutdown
    ("terminate called without an active exception", SIGABRT): gloo's threads still hold work
    that Python is tearing down. Measured: 4 of 30 two-process `titok eval` runs, before this.
    """
    if world_size() <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main_decides(value: Item) -> Item:
    """The main process's `value`, on every process.

    A decision read from the run directory (is this stage done?) must be the same everywhere:
    a process that looks a moment later may already see what the main process has just written.
    """
    if world_size() <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    holder = [value]
    broadcast_object_list(holder, from_process=0)
    return holder[0]


def first_to_report() -> bool:
    """True in the first process of a launch that asks (always, without a launcher).

    A failure is reported once: every process that fails asks, and only the first one prints.
    The count lives in the launcher's key-value store (torchrun's), which outlives the workers;
    when it cannot be reached, every failing process reports.
    """
    if world_size() <= 1:
        return True
    try:
        from datetime import timedelta

        from torch.distributed import TCPStore

        store = TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            is_master=False,
            timeout=timedelta(seconds=10),
        )
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
        return store.add(f"titok/{run_id}/failures-reported", 1) == 1
    except Exception:  # no store to ask: better twice than never
        return True


def lost_a_peer(error: BaseException) -> bool:
    """True for the error a process gets when another process of the launch has stopped."""
    text = str(error)
    return world_size() > 1 and any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer")
    )


def map_batches(batches: Sequence[Item], run: Callable[[int, Item], Any]) -> list[Any]:
    """`run(number, batch)` for every batch, shared across processes; results in batch order."""
    size = world_size()
    if size <= 1:
        return [run(number, batch) for number, batch in enumerate(batches)]
    from accelerate.utils import gather_object

    mine = [(n, run(n, b)) for n, b in enumerate(batches) if n % size == rank()]
    gathered = gather_object(mine)
    by_number = dict(gathered)
    return [by_number[n] for n in range(len(batches))]


def map_shards(items: Sequence[Item], run: Callable[[list[Item]], list[Any]]) -> list[Any]:
    """`run` on every process's share of `items` (every world_size-th one); results in order."""
    size = world_size()
    if size <= 1:
        return run(list(items))
    from accelerate.utils import gather_object

    mine = list(range(rank(), len(items), size))
    results = run([items[i] for i in mine]) if mine else []
    by_index = dict(gather_object(list(zip(mine, results, strict=True))))
    return [by_index[i] for i in range(len(items))]
