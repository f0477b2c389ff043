"""Test helper: ``repeatlens ARGS`` that sleeps PAUSE seconds after reading its first scores table.

    python tests/paused_cli.py PAUSE analyze RUN_DIR ...

Two such processes on one folder would, without the folder lock, both read the same
table, and the last writer would drop the other's rows; with it, the second waits and
re-reads. The pause lives here, not in repeatlens, so production code carries no test hook.
"""

import sys
import time

from repeatlens.results import store

_real_read = store.ScoreTable.read.__func__
_paused = []


def _read_then_pause(cls, path):
    table = _real_read(cls, path)
    if not _paused:
        _paused.append(path)
        time.sleep(float(sys.argv[1]))
    return table


store.ScoreTable.read = classmethod(_read_then_pause)

if __name__ == "__main__":
    from repeatlens.cli import main

    main(sys.argv[2:])
