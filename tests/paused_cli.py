"""Test helper: ``repeatlens ARGS`` that sleeps PAUSE seconds after reading its first scores table.

    python tests/paused_cli.py PAUSE analyze RUN_DIR ...

Two such processes on one folder would, without the folder lock, both read the same
table, and the last writer would drop the other's rows; with it, the second waits and
re-reads. The pause lives here, not in repeatlens, so production code carries no test hook.
"""

import sys
import time


def pause_after_first_read(seconds: float) -> None:
    """Make this process's first ``ScoreTable.read`` sleep ``seconds`` after reading."""
    from repeatlens.results import store

    real_read = store.ScoreTable.read.__func__
    paused: list = []

    def read_then_pause(cls, path):
        table = real_read(cls, path)
        if not paused:
            paused.append(path)
            time.sleep(seconds)
        return table

    store.ScoreTable.read = classmethod(read_then_pause)


if __name__ == "__main__":
    from repeatlens.cli import main

    pause_after_first_read(float(sys.argv[1]))
    main(sys.argv[2:])
