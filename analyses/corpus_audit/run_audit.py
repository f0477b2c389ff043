"""Audit the corpora this project reads without a network: the bundled Shakespeare and the
CPython standard library. Writes results/<name>/ (what ``repeatlens audit`` writes) and
results/figures/<name>.html (+ .png with kaleido and Chromium), one plotly.min.js beside them.

    python analyses/corpus_audit/run_audit.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import repeatlens
from repeatlens.plots.export import find_chromium, write_figures

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CORPORA = {
    # the corpus and tokenizer of the natural-text study (BPE 1024, seq_len 128)
    "shakespeare": dict(corpus="shakespeare", vocab_size=1024),
    # Debian's python3.11 standard library, every .py file one document, a BPE of 2048 trained on it
    "cpython_stdlib": dict(corpus="/usr/lib/python3.11/**/*.py", vocab_size=2048),
}
MODEL_SIZE = "10M"


def main() -> None:
    figures = RESULTS / "figures"
    for name, settings in CORPORA.items():
        out = RESULTS / name
        res = repeatlens.audit(settings["corpus"], out, vocab_size=settings["vocab_size"], seq_len=128,
                               model_size=MODEL_SIZE, progress=sys.stderr.isatty())
        # out/audit.html embeds plotly.js (4.7 MB) and stays out of git (.gitignore); the
        # committed copy below shares one plotly.min.js with the other corpus's figure
        formats = ["html", "png"] if find_chromium() else ["html"]
        write_figures({name: res.figure}, figures, formats, include_plotlyjs="directory")
        print(f"== {name} ({res.record['seconds']:.0f} s)")
        print("\n".join(res.summary))
    shutil.rmtree(RESULTS / "figures" / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
