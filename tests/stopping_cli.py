"""Test helper: ``repeatlens ARGS`` that stops itself (SIGSTOP) at a chosen point of training.

    python tests/stopping_cli.py POINT train CONFIG --out RUN ...

POINT is ``rows`` (set-up: the run's rows written, its tokenizer and schedule not yet) or
a step N (right after the first checkpoint at or past step N is written). The test then
sends SIGKILL or SIGINT (and SIGCONT) to a process that is certainly mid-run: polling the
folder from outside raced the training loop, and on a loaded machine a signal sent "once
step 40 is checkpointed" sometimes arrived after the loop had ended. The stop lives here,
not in repeatlens, so production code carries no test hook.
"""

import os
import signal
import sys


def stop_at(point: str) -> None:
    """Make this process SIGSTOP itself once, at ``point``."""
    import repeatlens.train as train

    stopped: list[bool] = []

    def stop_once() -> None:
        if not stopped:
            stopped.append(True)
            os.kill(os.getpid(), signal.SIGSTOP)  # a signal sent while stopped is acted on once continued

    if point == "rows":
        real_save_npy = train.atomic_save_npy

        def save_npy_then_stop(path, array):
            real_save_npy(path, array)
            if os.path.basename(path) == "rows.npy":
                stop_once()

        train.atomic_save_npy = save_npy_then_stop
        return
    real_save, step_at = train.save_checkpoint, int(point)

    def save_then_stop(run, model, step, *args, **kwargs):
        out = real_save(run, model, step, *args, **kwargs)
        if step >= step_at:
            stop_once()
        return out

    train.save_checkpoint = save_then_stop


if __name__ == "__main__":
    from repeatlens.cli import main

    stop_at(sys.argv[1])
    main(sys.argv[2:])
