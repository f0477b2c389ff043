"""``repeatlens audit`` on the command line: its output, and one line for every bad input.

| bad input                          | message contains                                         | exit |
|------------------------------------|----------------------------------------------------------|------|
| a JSON-lines file with a bad line  | ``bad.jsonl:2' is not valid JSON``                        | 2    |
| a binary file read as text         | ``blob.txt' is a binary file``                            | 2    |
| a corpus with no documents         | ``no documents in``                                       | 2    |
| a missing corpus                   | ``no file, folder or glob match``                         | 2    |
| a model size of zero               | ``--model-size '0': expected a positive number``          | 2    |
| a malformed scaling-fit JSON       | ``field 'alpha'``                                         | 2    |
| --epochs and --tokens together     | ``give one``                                              | 2    |
| a sweep the corpus cannot fill     | ``no repeated span buckets`` (the audit is written)       | 1    |

In every case with exit 2, nothing is written and an earlier audit in the folder is intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repeatlens.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def first_audit(known_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A successful audit whose files the failing runs below must leave alone."""
    out = tmp_path_factory.mktemp("cli") / "out"
    main_args = ["audit", str(known_files["jsonl"]), "--out", str(out), "--tokenizer", str(known_files["tokenizer"]),
                 "--seq-len", "32", "--model-size", "10M", "-q"]
    try:
        main(main_args)
    except SystemExit as e:
        assert not e.code
    return out


def test_the_command_prints_the_summary_and_writes_the_files(first_audit: Path) -> None:
    assert sorted(p.name for p in first_audit.iterdir()) == ["audit.csv", "audit.html", "audit.json", "audit.parquet",
                                                             "damage.csv", "summary.txt"]
    record = json.loads((first_audit / "audit.json").read_text())
    assert record["model"] == {"N": 1e7, "from": "--model-size"}
    assert record["region"]["source"] == "published"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("case", ["bad_jsonl", "binary", "empty", "missing", "zero_size", "bad_fit", "epochs_and_tokens"])
def test_bad_input_gets_one_line_and_writes_nothing(case: str, first_audit: Path, known_files: dict[str, Path],
                                                    tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus, extra, message = str(known_files["jsonl"]), [], ""
    if case == "bad_jsonl":
        (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')
        corpus, message = str(tmp_path / "bad.jsonl"), "bad.jsonl:2' is not valid JSON"
    elif case == "binary":
        (tmp_path / "blob.txt").write_bytes(b"text\0\1\2")
        corpus, message = str(tmp_path / "blob.txt"), "blob.txt' is a binary file"
    elif case == "empty":
        (tmp_path / "blank.txt").write_text("  \n\n ")
        corpus, message = str(tmp_path / "blank.txt"), "no documents in"
    elif case == "missing":
        corpus, message = str(tmp_path / "nope.jsonl"), "no file, folder or glob match"
    elif case == "zero_size":
        extra, message = ["--model-size", "0"], "--model-size '0': expected a positive number"
    elif case == "bad_fit":
        (tmp_path / "fit.json").write_text(json.dumps({"format": "repeatlens-scaling-fit/1", "alpha": "x"}))
        extra, message = ["--model-size", "1e7", "--region", str(tmp_path / "fit.json")], "field '"
    else:
        extra, message = ["--epochs", "2", "--tokens", "1e6"], "give one"
    before = snapshot(first_audit)
    for out in (first_audit, tmp_path / "fresh"):
        code, _, err = run(["audit", corpus, "--out", str(out), "--tokenizer", str(known_files["tokenizer"]),
                            "--seq-len", "32", "--no-spans", "-q", *extra], capsys)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert snapshot(first_audit) == before
    assert not (tmp_path / "fresh").exists()


def test_ctrl_c_exits_130_and_writes_nothing(known_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from repeatlens.corpus_audit import count

    def interrupt(self, doc):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(count.DocumentCounter, "add", interrupt)
    code, _, err = run(["audit", str(known_files["jsonl"]), "--out", str(tmp_path / "o"), "--tokenizer",
                        str(known_files["tokenizer"]), "-q"], capsys)
    assert code == 130 and "interrupted" in err and not (tmp_path / "o").exists()


def test_a_sweep_the_corpus_cannot_fill_still_writes_the_audit(known_files: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "u.jsonl").write_text("".join(json.dumps({"text": f"document number {i} " * 30}) + "\n" for i in range(20)))
    code, out, err = run(["audit", str(tmp_path / "u.jsonl"), "--out", str(tmp_path / "o"), "--tokenizer",
                          str(known_files["tokenizer"]), "--no-near", "--sweep-unit", "document", "--write-sweep",
                          str(tmp_path / "s.yaml"), "-q"], capsys)
    assert code == 1 and err.strip().splitlines() == [
        "error: --write-sweep: the corpus has no repeated document buckets (every document occurs once); no grid to write"]
    assert (tmp_path / "o" / "audit.json").is_file() and not (tmp_path / "s.yaml").exists()
    assert "wrote audit.parquet" in out
