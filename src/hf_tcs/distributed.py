"""What the processes of a multi-process run (`accelerate launch`, `torchrun`) agree on, and how they fail together.

- `check_launch`: refuse training arguments that would run each launched process as a whole run of its own;
- `distributed_state`: accelerate's state when several processes were launched, else None;
- `shard_bounds`: the contiguous rows a process takes;
- `fail_together`: an error on one process is raised on every process, instead of leaving the others waiting in their
  next collective;
- `merge_across_processes`: one value (e.g. `FeatureStatistics`) merged over every process;
- `enter_teacher_pass`: how one teacher pass runs (all processes on their shards, or the main process alone while
  the others wait for its cache), agreed through the process group's key-value store, never in a collective.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import reduce
from typing import Any, NamedTuple, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch.distributed import distributed_c10d

__all__ = [
    "check_launch",
    "distributed_state",
    "end_process_group",
    "enter_teacher_pass",
    "fail_together",
    "merge_across_processes",
    "shard_bounds",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Whether the processes of a multi-process run share a teacher pass is agreed through the process group's key-value
# store, never in a collective (a process that is not there would leave the others waiting in it forever). The main
# process waits this long for the others; when they do not come (they are waiting for it, e.g. under
# `main_process_first`), it runs the pass alone, and they load its cache when they get there.
ARRIVAL_TIMEOUT = 15.0
# How long another process waits for the main process to enter the same teacher pass before it stops with an error.
MAIN_PROCESS_TIMEOUT = 600.0
_POLL_SECONDS = 0.05
_pass_numbers = itertools.count()  # the n-th teacher pass of this process: the same pass on every process
_last_pass_alone: str | None = None  # store key of the last pass the main process ran alone


def shard_bounds(num_rows: int, num_shards: int, index: int) -> tuple[int, int]:
    """Rows ``[start, end)`` of contiguous shard ``index``: in order, sizes differing by at most one."""
    size, remainder = divmod(num_rows, num_shards)
    start = index * size + min(index, remainder)
    return start, start + size + int(index < remainder)


def end_process_group() -> None:
    """Destroy the default process group of a launched run, at the end of its script (what accelerate's
    `Accelerator.end_training` does).

    Left to interpreter shutdown, gloo's threads can abort a process that has finished its work (`terminate called
    without an active exception`, exit code -6, seen on two loaded CPU cores), and `accelerate launch` then reports a
    failed run. A no-op outside a launched run.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_launch(args: Any) -> None:
    """Refuse training arguments that would run each of several launched processes as a whole run of its own.

    `accelerate launch` with a GPU config on a machine without GPUs starts the processes and a process group, but
    `TrainingArguments` without `use_cpu` then falls back to a single non-distributed process: every process would
    train on all the data and write to the same output folder, with only a warning from transformers.
    """
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    launched = torch.distributed.get_world_size() if initialized else int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size == 1:
        raise ValueError(
            f"{launched} processes were launched, but the training arguments run each of them on its own (no GPU for "
            "the launch config?): every process would train on all the data and write to the same output folder. "
            "On CPUs, pass `--use_cpu` (`TrainingArguments(use_cpu=True)`), e.g. `accelerate launch --config_file "
            "examples/accelerate_configs/cpu.yaml SCRIPT ... --use_cpu`; on GPUs, check that they are visible."
        )


def distributed_state() -> PartialState | None:
    """accelerate's state when several processes were launched (accelerate launch, torchrun), else None."""
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not initialized and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None  # one process: accelerate's state is left to TrainingArguments / Accelerator to set up
    # Without an accelerator, accelerate joins the launched processes (gloo) only when told to run on CPU; an
    # already set up state (TrainingArguments, Accelerator) is returned as it is.
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    state = PartialState(cpu=not has_accelerator)
    return state if state.num_processes > 1 else None


class TeacherPass(NamedTuple):
    """One teacher pass of a multi-process run, as the main process decided it (see `enter_teacher_pass`)."""

    together: bool  # every process runs its own shard; else the main process runs it all and the others load it
    fingerprint: str  # the main process's: it names the cache on every process
    store: Any
    key: str

    @contextmanager
    def report_outcome(self) -> Iterator[None]:
        """Run the main process's lone pass and tell the processes waiting for it how it ended."""
        try:
            yield
        except BaseException as error:
            self.store.set(f"{self.key}/done", json.dumps(f"{type(error).__name__}: {error}"))
            raise
        self.store.set(f"{self.key}/done", json.dumps(None))


def enter_teacher_pass(state: PartialState, fingerprint: str, num_rows: int) -> TeacherPass:
    """Agree with the other processes on how this teacher pass runs, through the process group's key-value store.

    Every process announces itself. The main process waits up to `ARRIVAL_TIMEOUT` seconds for the others: when all
    came, they run the pass together (after checking that they hold as many rows); otherwise it runs the pass alone
    and the others, when they come, wait for it to end and load its cache. No collective runs until every process
    is known to be there, so no process can wait for another one forever.
    """
    global _last_pass_alone
    # The store the default process group was set up with (torch 2.x; private, but there is no public accessor).
    store = distributed_c10d._get_default_store()
    key = f"hf_tcs/teacher_pass/{next(_pass_numbers)}"
    arrivals = [f"{key}/arrived/{rank}" for rank in range(state.num_processes)]
    store.set(arrivals[state.process_index], json.dumps([fingerprint, num_rows]))
    if state.is_main_process:
        # Processes that have not reached the pass this process last ran alone are still held back: do not wait.
        held_back = _last_pass_alone is not None and not store.check(
            [f"{_last_pass_alone}/arrived/{rank}" for rank in range(1, state.num_processes)]
        )
        deadline = time.monotonic() + (0.0 if held_back else ARRIVAL_TIMEOUT)
        while not store.check(arrivals) and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
        if store.check(arrivals):
            lengths = [json.loads(store.get(arrival))[1] for arrival in arrivals]
            decision = ["together", fingerprint, lengths]
        else:
            decision = ["alone", fingerprint, [num_rows]]
            _last_pass_alone = key
        decision = json.loads(store.compare_set(f"{key}/decision", "", json.dumps(decision)))
    else:
        decision = _wait_for_main_process(store, key, state)
    mode, fingerprint, lengths = decision
    if mode == "abandoned":
        raise RuntimeError(
            f"Rank {fingerprint} stopped waiting for the main process to start this teacher pass: every process must "
            "call `precompute_teacher_features` with the same dataset, either all at the same point or inside "
            "`main_process_first` (the main process first), and the same number of times."
        )
    if len(set(lengths)) > 1 or lengths[0] != num_rows:
        raise ValueError(
            f"The processes passed datasets of different lengths to the teacher pass ({lengths} rows on "
            f"{'the ranks' if mode == 'together' else 'the main process'}, {num_rows} on rank {state.process_index}): "
            "every process must pass the same dataset; each one then runs the teacher on its own shard."
        )
    if mode == "alone" and not state.is_main_process:
        if not store.check([f"{key}/done"]):
            logger.info("Waiting for the main process, which runs the teacher pass alone, to finish it.")
        while not store.check([f"{key}/done"]):  # the main process is at work: its pass takes what it takes
            time.sleep(_POLL_SECONDS)
        error = json.loads(store.get(f"{key}/done"))
        if error is not None:
            raise RuntimeError(f"The teacher pass failed on the main process (rank 0): {error}")
    return TeacherPass(mode == "together", fingerprint, store, key)


def _wait_for_main_process(store: Any, key: str, state: PartialState) -> list:
    """The main process's decision on teacher pass `key`; an error after `MAIN_PROCESS_TIMEOUT` seconds without it."""
    deadline = time.monotonic() + MAIN_PROCESS_TIMEOUT
    while not store.check([f"{key}/decision"]):
        if time.monotonic() > deadline:
            abandoned = json.dumps(["abandoned", state.process_index, [0]])
            if store.compare_set(f"{key}/decision", "", abandoned).decode() == abandoned:
                raise RuntimeError(
                    f"Rank {state.process_index} waited {MAIN_PROCESS_TIMEOUT:.0f} s for the main process to start "
                    "the same teacher pass, in vain: every process must call `precompute_teacher_features` with the "
                    "same dataset, either all at the same point or inside `main_process_first` (the main process "
                    "first), and the same number of times."
                )
        time.sleep(_POLL_SECONDS)
    return json.loads(store.get(f"{key}/decision"))


@contextmanager
def fail_together(state: PartialState | None, action: str) -> Iterator[None]:
    """Run the body on every process; when it raises on any of them, raise on all of them.

    The failing process re-raises its own error; the others raise a RuntimeError that names the failing rank and
    carries its message. Without this, the processes that succeeded would wait in their next collective operation
    for one that never comes, until the process group's timeout (30 minutes by default). Costs one all-gather of a
    status; a no-op in a single process.
    """
    if state is None or state.num_processes == 1:
        yield
        return
    error = None
    try:
        yield
    except Exception as exception:
        error = exception
    statuses = gather_object([None if error is None else f"{type(error).__name__}: {error}"])
    if error is not None:
        raise error
    failed = [rank for rank, status in enumerate(statuses) if status is not None]
    if failed:
        raise RuntimeError(
            f"{action} failed on rank {failed[0]} of {state.num_processes}"
            + (f" (and on ranks {failed[1:]})" if len(failed) > 1 else "")
            + f": {statuses[failed[0]]}"
        )


def merge_across_processes(value: T, merge: Callable[[T, T], T]) -> T:
    """`value` of every process merged with `merge`, in rank order; every process gets the result."""
    return reduce(merge, gather_object([value]))
