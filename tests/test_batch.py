"""Batch scoring of files: resume after a crash, error records, ids, the summary, memory.

The in-process tests interrupt a run by raising KeyboardInterrupt in the middle of it (what
Ctrl-C does); the kill test runs the command as a subprocess and SIGKILLs it at random points.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from promofilter import cli
from test_cli import read_jsonl, write_lines

from benchmarks.batch import run_measured

SENTENCES = [
    "Der DAX schloss am Freitag 0,4 Prozent höher.",
    "Die Bundesbank senkte ihre Prognose für das laufende Jahr.",
    "Im dritten Quartal wuchs der Umsatz um zwölf Prozent.",
    "Hier weiterlesen...",
    "Jetzt Gratis-Analyse sichern!",
    "Der Vorstand bestätigte die Jahresziele.",
    "Kaufen oder verkaufen?! Die Antwort steht im Gratis-Report.",
    "Die Gewerkschaft kündigte weitere Warnstreiks an.",
]


def good_line(index: int, rng: random.Random) -> str:
    text = " ".join(rng.choices(SENTENCES, k=rng.randint(1, 3)))
    return json.dumps({"id": f"r{index}", "text": text}, ensure_ascii=False)


# one of each kind of malformed record, with --max-chars 300
BAD_KINDS = [
    b"{not json",
    json.dumps({"id": "no-text", "body": "kein Textfeld"}).encode(),
    json.dumps({"id": "number", "text": 42}).encode(),
    b'{"id": "latin1", "text": "Gr\xfc\xdfe"}',
    json.dumps({"id": "long", "text": "Sehr lang. " * 40}).encode(),
]


def make_input(path: Path, records: int, seed: int = 6) -> Path:
    """``records`` lines, every 97th a malformed one (cycling through BAD_KINDS)."""
    rng = random.Random(seed)
    lines: list[str | bytes] = []
    for index in range(records):
        if index % 97 == 50:
            lines.append(BAD_KINDS[(index // 97) % len(BAD_KINDS)])
        else:
            lines.append(good_line(index, rng))
    return write_lines(path, lines)


class Interrupt:
    """Make ``_Run.flush`` raise KeyboardInterrupt once ``after`` chunks were committed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
        self.calls = 0
        self.after = after
        original = cli._Run.flush

        def flush(run, pending):
            if self.calls == self.after:
                raise KeyboardInterrupt
            self.calls += 1
            original(run, pending)

        monkeypatch.setattr(cli._Run, "flush", flush)


# --- resume, in-process ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_name", "errors"), [("out.jsonl", False), ("out.csv", False), ("out.parquet", True)]
)
def test_an_interrupted_run_resumes_to_the_same_output(
    keyword_model, tmp_path, monkeypatch, capsys, output_name, errors
):
    if output_name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    source = make_input(tmp_path / "in.jsonl", 300)
    common = ["score", str(source), "--batch-size", "2", "--max-chars", "300"]
    reference, interrupted = tmp_path / "reference" / output_name, tmp_path / output_name
    reference.parent.mkdir()
    extra = ["--errors", str(tmp_path / "reference" / "errors.jsonl")] if errors else []
    assert cli.main([*common, "-o", str(reference), *extra]) == 1
    extra = ["--errors", str(tmp_path / "errors.jsonl")] if errors else []

    with monkeypatch.context() as patch:
        Interrupt(patch, after=3)
        assert cli.main([*common, "-o", str(interrupted), *extra]) == 130
    progress = json.loads((tmp_path / f"{output_name}.progress.json").read_text())
    assert progress["consumed"] == 3 * 16  # three chunks of 16 records were committed
    capsys.readouterr()

    assert cli.main([*common, "-o", str(interrupted), *extra, "--resume"]) == 1
    err = capsys.readouterr().err
    assert "skipped 48," in err and "scored 249, errors 3" in err  # 252 + 3 after the skip
    assert not (tmp_path / f"{output_name}.progress.json").exists()
    assert not (tmp_path / f"{output_name}.parts").exists()
    assert interrupted.read_bytes() == reference.read_bytes()
    if errors:
        assert (tmp_path / "errors.jsonl").read_bytes() == (
            tmp_path / "reference" / "errors.jsonl"
        ).read_bytes()


def test_a_run_without_resume_refuses_to_overwrite_an_interrupted_one(
    keyword_model, tmp_path, monkeypatch, capsys
):
    source = make_input(tmp_path / "in.jsonl", 100)
    output = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        Interrupt(patch, after=1)
        assert cli.main(["score", str(source), "-o", str(output), "--batch-size", "1"]) == 130
    committed = output.read_bytes()
    assert "add --resume to go on" in capsys.readouterr().err
    assert cli.main(["score", str(source), "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert "an interrupted run left" in err and "--resume" in err
    assert output.read_bytes() == committed  # untouched


def test_resume_of_a_finished_output_is_refused_and_of_none_starts(keyword_model, tmp_path, capsys):
    source = make_input(tmp_path / "in.jsonl", 20)
    output = tmp_path / "out.jsonl"
    assert cli.main(["score", str(source), "-o", str(output), "--resume"]) == 0  # a fresh run
    assert len(read_jsonl(output.read_text())) == 20
    assert cli.main(["score", str(source), "-o", str(output), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert cli.main(["score", str(source), "--resume"]) == 2
    assert "--resume needs an output file" in capsys.readouterr().err


def test_resume_refuses_a_changed_input(keyword_model, tmp_path, monkeypatch, capsys):
    source = make_input(tmp_path / "in.jsonl", 100)
    output = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        Interrupt(patch, after=1)
        assert cli.main(["score", str(source), "-o", str(output), "--batch-size", "1"]) == 130
    with source.open("ab") as handle:
        handle.write(b'{"id": "late", "text": "Nachtrag."}\n')
    capsys.readouterr()
    assert cli.main(["score", str(source), "-o", str(output), "--batch-size", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {output}: the input file changed" in err
    assert str(source) in err


def test_resume_refuses_a_changed_model_or_option(model_dir, tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    source = make_input(tmp_path / "in.jsonl", 100)
    output = tmp_path / "out.jsonl"
    args = ["score", str(source), "-o", str(output), "--model", str(model), "--batch-size", "1"]
    with monkeypatch.context() as patch:
        Interrupt(patch, after=1)
        assert cli.main(args) == 130
    capsys.readouterr()
    assert cli.main([*args, "--resume", "--threshold", "0.9"]) == 2
    assert "threshold changed" in capsys.readouterr().err
    tokenizer = model / "tokenizer.json"  # same tokenizer, written differently: a new file
    tokenizer.write_text(json.dumps(json.loads(tokenizer.read_text()), indent=1))
    assert cli.main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "the model changed (tokenizer.json sha256" in err and str(model) in err


# --- error records, ids, the summary ---------------------------------------------------------


def test_every_kind_of_bad_record_gets_an_error_record_with_its_line(
    keyword_model, tmp_path, capsys
):
    source = write_lines(tmp_path / "in.jsonl", [*BAD_KINDS, json.dumps({"text": "Gut."})])
    assert cli.main(["score", str(source), "--max-chars", "300"]) == 1
    records = read_jsonl(capsys.readouterr().out)
    reasons = [r["_error"]["reason"] for r in records[:5]]
    assert [r["_error"]["line"] for r in records[:5]] == [1, 2, 3, 4, 5]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "missing field 'text'"
    assert reasons[2] == "field 'text' is int, expected a string"
    assert reasons[3].startswith("not valid UTF-8")
    assert reasons[4] == "field 'text' has 440 characters, over the cap of 300 (--max-chars)"
    assert records[5]["label"] == "factual"


def test_id_field_is_carried_with_the_line_number_where_there_is_none(
    keyword_model, tmp_path, capsys
):
    lines = [
        json.dumps({"key": "a", "text": "Der Kurs stieg."}),
        json.dumps({"text": "Ohne Schlüssel."}),
        "{kaputt",
        json.dumps({"key": "d", "text": 7}),
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    assert cli.main(["score", str(source), "--id-field", "key"]) == 1
    records = read_jsonl(capsys.readouterr().out)
    assert [r["key"] for r in records] == ["a", 2, 3, "d"]
    assert "_error" in records[2] and "_error" in records[3]
    assert records[1]["label"] == "factual"


def test_the_summary_counts_scored_errors_skipped_and_the_rate(keyword_model, tmp_path, capsys):
    source = make_input(tmp_path / "in.jsonl", 200)
    assert cli.main(["score", str(source), "-o", str(tmp_path / "o.jsonl")]) == 1
    summary = capsys.readouterr().err.splitlines()[0]
    assert summary.startswith("promofilter: scored 198, errors 2, skipped 0, elapsed ")
    assert summary.endswith(" records/s")


def test_csv_output_has_the_columns_of_every_record(keyword_model, tmp_path, capsys):
    import csv
    import io

    lines = [json.dumps({"id": i, "text": "Der Kurs stieg."}) for i in range(40)]
    lines.append(json.dumps({"id": 40, "text": "Jetzt kaufen!", "late": "spät"}))
    source = write_lines(tmp_path / "in.jsonl", lines)
    output = tmp_path / "out.csv"  # with --batch-size 1 the late field is in the sixth chunk
    assert cli.main(["score", str(source), "-o", str(output), "--batch-size", "1"]) == 0
    with output.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "text", "promo_score", "label", "late"]
    assert rows[40]["late"] == "spät" and rows[0]["late"] == ""
    capsys.readouterr()
    assert cli.main(["score", str(source), "--output-format", "csv", "-q"]) == 0
    header = next(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert header == ["id", "text", "promo_score", "label", "late"]  # one chunk of 256


# --- kill -9 at random points ----------------------------------------------------------------


def _committed(progress: Path) -> int:
    try:
        return json.loads(progress.read_text())["consumed"]
    except (OSError, ValueError):  # not written yet
        return -1


@pytest.mark.parametrize("output_name", ["out.jsonl", "out.parquet"])
def test_kill_9_at_random_points_loses_and_duplicates_nothing(model_dir, tmp_path, output_name):
    """SIGKILL the command at least 10 times at random points, resume until done, and compare
    with a run that was never killed: the same records, once each, in order, byte for byte."""
    if output_name.endswith(".parquet"):
        pq = pytest.importorskip("pyarrow.parquet")
    records = 4000
    source = make_input(tmp_path / "in.jsonl", records)
    rng = random.Random(20261125)

    def command(folder: Path) -> list[str]:
        folder.mkdir(exist_ok=True)
        extra = ["--errors", str(folder / "errors.jsonl")] if output_name != "out.jsonl" else []
        return [
            sys.executable, "-m", "promofilter", "score", str(source),
            "-o", str(folder / output_name), "--model", str(model_dir),
            "--batch-size", "2", "--max-chars", "300", "--quiet", "--resume", *extra,
        ]  # fmt: skip

    reference = subprocess.run(command(tmp_path / "reference"), capture_output=True, timeout=300)
    assert reference.returncode == 1, reference.stderr  # 1: there were malformed records

    folder = tmp_path / "killed"
    progress = folder / f"{output_name}.progress.json"
    # kill points: two at random moments of start-up, ten at random records of the input
    # (each after a random few milliseconds more, so kills land inside writes and commits too)
    targets = [None, None, *sorted(rng.sample(range(1, records - 100), 10))]
    kills_mid_run = 0
    for target in targets:
        process = subprocess.Popen(command(folder), stderr=subprocess.PIPE)
        if target is None:
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            deadline = time.monotonic() + 120
            while _committed(progress) < target and process.poll() is None:
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.02))
        assert process.poll() is None, process.stderr.read().decode()  # killed before the end
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        kills_mid_run += 0 < _committed(progress) < records
    assert kills_mid_run >= 10
    final = subprocess.run(command(folder), capture_output=True, timeout=300)
    assert final.returncode == 1, final.stderr
    assert not progress.exists()

    if output_name.endswith(".parquet"):
        got = pq.read_table(folder / output_name).to_pylist()
        expected = pq.read_table(tmp_path / "reference" / output_name).to_pylist()
        errors = read_jsonl((folder / "errors.jsonl").read_text())
        assert (folder / "errors.jsonl").read_bytes() == (
            tmp_path / "reference" / "errors.jsonl"
        ).read_bytes()
    else:
        got = read_jsonl((folder / output_name).read_text())
        expected = read_jsonl((tmp_path / "reference" / output_name).read_text())
        errors = [r for r in got if "_error" in r]
        assert (folder / output_name).read_bytes() == (
            tmp_path / "reference" / output_name
        ).read_bytes()
    assert got == expected
    scored = [r["id"] for r in got if r.get("label")]
    assert len(scored) == len(set(scored))  # nothing twice
    lines = sorted([r["_error"]["line"] for r in errors])
    assert lines == [i + 1 for i in range(records) if i % 97 == 50]
    assert len(scored) + len(errors) == records  # nothing lost


# --- memory ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_200000_record_file_streams_in_bounded_memory(model_dir, tmp_path):
    """A 400 MB file: reading it whole would hold ~400 MB of strings; streaming must stay under
    the 250 MB runtime budget plus 100 MB."""
    records, padding = 200_000, 2000
    rng = random.Random(7)
    source = tmp_path / "big.jsonl"
    filler = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=padding + 1000))
    with source.open("w", encoding="utf-8") as handle:
        for index in range(records):
            start = rng.randrange(1000)  # a different body each time: no sharing of strings
            text = " ".join(rng.choices(SENTENCES, k=rng.randint(1, 2)))
            body = filler[start : start + padding]
            handle.write(json.dumps({"id": index, "text": text, "body": body}) + "\n")
    assert source.stat().st_size > 400e6
    output = tmp_path / "big.scored.jsonl"
    command = [
        sys.executable, "-m", "promofilter", "score", str(source), "-o", str(output),
        "--model", str(model_dir),
    ]  # fmt: skip
    code, stderr, _, peak_mb = run_measured(command, timeout=1200)
    assert code == 0, stderr
    assert "scored 200,000, errors 0" in stderr
    with output.open("rb") as handle:
        count = sum(1 for _ in handle)
    assert count == records
    with output.open(encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    assert first["id"] == 0 and first["label"] in ("factual", "promotional")
    assert peak_mb < 350, f"peak RSS {peak_mb:.0f} MB"
    os.remove(source)
    os.remove(output)


def test_peak_rss_probe_sees_a_large_allocation():
    """The probe of the memory test can fail: it sees a child that holds 400 MB."""
    allocate = "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * 102400"
    code, _, _, peak_mb = run_measured([sys.executable, "-c", allocate])
    assert code == 0
    assert peak_mb > 400
