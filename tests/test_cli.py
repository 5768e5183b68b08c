"""The ``promofilter`` command, in-process through ``main(argv)`` and once as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import promofilter
import pytest
from promofilter import cli
from promofilter.progress import Progress


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def set_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --- arguments -------------------------------------------------------------------------------


def test_parse_args_defaults_and_choices():
    args = cli.parse_args(["score"])
    assert (args.command, args.input, args.output, args.text_field) == ("score", "-", None, "text")
    assert args.threads == promofilter.model.DEFAULT_THREADS and args.batch_size == 32
    assert args.threshold is None and not args.strict and not args.quiet
    args = cli.parse_args(["analyze", "in.csv", "-o", "out.parquet", "--threshold", "0.7", "-q"])
    assert (args.input, args.output, args.threshold, args.quiet) == (
        "in.csv",
        "out.parquet",
        0.7,
        True,
    )
    assert cli.parse_args(["clean", "-"]).file == "-"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["clean"],
        ["score", "--threshold", "1.5"],
        ["score", "--threshold", "x"],
        ["score", "--batch-size", "0"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: promofilter" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for code in ("0", "1", "2", "3"):
        assert re.search(rf"^  {code} ", out, re.MULTILINE)
    assert cli.main(["score", "--help"]) == 0
    assert "exit codes" in capsys.readouterr().out


def test_clean_help_offers_only_what_clean_does(capsys):
    assert cli.main(["clean", "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  3 ", out, re.MULTILINE)
    assert not re.search(r"^  1 ", out, re.MULTILINE)  # one text in: no error records
    assert "--quiet" not in out  # no progress bar or run summary to silence


# --- score -----------------------------------------------------------------------------------


def test_score_jsonl_adds_score_and_label_and_keeps_the_fields(keyword_model, tmp_path, capsys):
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": "a", "text": "Der DAX stieg.", "meta": {"x": 1}}),
            "",
            json.dumps({"id": "b", "text": "Jetzt Depot eröffnen!"}),
        ],
    )
    assert cli.main(["score", str(source)]) == 0
    records = read_jsonl(capsys.readouterr().out)
    assert records == [
        {
            "id": "a",
            "text": "Der DAX stieg.",
            "meta": {"x": 1},
            "promo_score": 0.1,
            "label": "factual",
        },
        {"id": "b", "text": "Jetzt Depot eröffnen!", "promo_score": 0.9, "label": "promotional"},
    ]


def test_score_on_the_real_model_matches_the_library(model_dir, tmp_path, capsys):
    texts = ["Der DAX stieg um 1 Prozent.", "Hier weiterlesen...", "Jetzt registrieren!"]
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in texts])
    assert cli.main(["score", str(source), "--model", str(model_dir), "--threshold", "0.5"]) == 0
    records = read_jsonl(capsys.readouterr().out)
    expected = promofilter.load(model_dir).predict_proba(texts)
    np.testing.assert_allclose([r["promo_score"] for r in records], expected, atol=0.02)
    assert [r["label"] for r in records] == [
        "promotional" if r["promo_score"] >= 0.5 else "factual" for r in records
    ]


def test_no_cascade_scores_with_the_encoder_on_every_text(cascade_model, tmp_path, capsys):
    texts = ["Der DAX stieg um 1 Prozent.", "Hier weiterlesen...", "Jetzt Gratis-Analyse sichern!"]
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in texts])
    scores = {}
    for flags in ([], ["--no-cascade"]):
        assert cli.main(["score", str(source), "--model", str(cascade_model), *flags]) == 0
        scores[bool(flags)] = [r["promo_score"] for r in read_jsonl(capsys.readouterr().out)]
    for cascade in (True, False):
        expected = promofilter.load(cascade_model, cascade=cascade).predict_proba(texts)
        np.testing.assert_allclose(scores[not cascade], expected, atol=1e-5)
    assert scores[True] != scores[False]  # the fixture's cascade skips some of these texts
    assert cli._load(cli.parse_args(["score", "x", "--no-cascade"])).cascade is None


BAD_LINES = [
    json.dumps({"id": 1, "text": "Der Kurs stieg."}),
    "{not json",
    json.dumps({"id": 3, "body": "kein Textfeld"}),
    json.dumps(["a", "list"]),
    json.dumps({"id": 5, "text": 42}),
    b'{"id": 6, "text": "\xff"}',
    json.dumps({"id": 7, "text": "Hier weiterlesen..."}),
]


# score reads the file in one chunk; analyze at batch size 1 flushes after every document
@pytest.mark.parametrize(("command", "batch_size"), [("score", "32"), ("analyze", "1")])
def test_malformed_records_get_error_records_in_line_and_the_run_goes_on(
    keyword_model, tmp_path, capsys, command, batch_size
):
    source = write_lines(tmp_path / "in.jsonl", BAD_LINES)
    assert cli.main([command, str(source), "--batch-size", batch_size]) == 1
    captured = capsys.readouterr()
    records = read_jsonl(captured.out)
    assert len(records) == len(BAD_LINES)  # every input record yields one output record
    assert records[0]["label"] == "factual" and records[6]["label"] == "promotional"
    errors = {r["_error"]["line"]: r for r in records if "_error" in r}
    assert sorted(errors) == [2, 3, 4, 5, 6]
    assert errors[2]["_error"]["reason"].startswith("invalid JSON")
    assert errors[3] == {"_error": {"line": 3, "reason": "missing field 'text'"}, "id": 3}
    assert "expected a JSON object" in errors[4]["_error"]["reason"]
    assert errors[5]["_error"]["reason"] == "field 'text' is int, expected a string"
    assert "not valid UTF-8" in errors[6]["_error"]["reason"]
    assert "5 malformed record(s)" in captured.err and "line 2" in captured.err


def test_strict_stops_at_the_first_malformed_record(keyword_model, tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", BAD_LINES)
    assert cli.main(["score", str(source), "--strict"]) == 1
    captured = capsys.readouterr()
    records = read_jsonl(captured.out)
    assert [r.get("id", r.get("_error", {}).get("line")) for r in records] == [1, 2]
    assert "stopped at the first malformed record" in captured.err


def test_errors_can_go_to_their_own_file(keyword_model, tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", BAD_LINES)
    errors = tmp_path / "errors.jsonl"
    assert (
        cli.main(["score", str(source), "--errors", str(errors), "-o", str(tmp_path / "o.jsonl")])
        == 1
    )
    assert [r["id"] for r in read_jsonl((tmp_path / "o.jsonl").read_text())] == [1, 7]
    assert [r["_error"]["line"] for r in read_jsonl(errors.read_text())] == [2, 3, 4, 5, 6]
    assert capsys.readouterr().out == ""


def test_text_field_option(keyword_model, tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"body": "Gratis-Report!"})])
    assert cli.main(["score", str(source), "--text-field", "body"]) == 0
    assert read_jsonl(capsys.readouterr().out)[0]["label"] == "promotional"


def test_stdin_plain_text_lines_and_jsonl(keyword_model, monkeypatch, capsys):
    set_stdin(monkeypatch, b"Der Kurs stieg.\n\nHier weiterlesen...\n")
    assert cli.main(["score"]) == 0
    assert read_jsonl(capsys.readouterr().out) == [
        {"line": 1, "text": "Der Kurs stieg.", "promo_score": 0.1, "label": "factual"},
        {"line": 3, "text": "Hier weiterlesen...", "promo_score": 0.9, "label": "promotional"},
    ]
    set_stdin(monkeypatch, b'{"text": "Jetzt kaufen"}\n')
    assert cli.main(["score", "-"]) == 0
    assert read_jsonl(capsys.readouterr().out)[0]["label"] == "promotional"


def test_csv_in_and_out(keyword_model, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text(
        'id,text\n1,"Der Kurs stieg.\nZweite Zeile"\n2,Gratis-Analyse sichern\n3\n',
        encoding="utf-8",
    )
    output = tmp_path / "out.csv"
    assert cli.main(["score", str(source), "-o", str(output)]) == 1
    with output.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # the error record stays in line, in an _error column that the header gained for it
    assert [(r["id"], r["label"]) for r in rows] == [
        ("1", "factual"),
        ("2", "promotional"),
        ("3", ""),
    ]
    assert rows[0]["text"] == "Der Kurs stieg.\nZweite Zeile" and rows[0]["_error"] == ""
    error = json.loads(rows[2]["_error"])
    assert error == {"line": 5, "reason": "missing field 'text'"}
    assert "scored 2, errors 1" in capsys.readouterr().err


def test_parquet_in_and_out(keyword_model, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow")
    import pyarrow

    source = tmp_path / "in.parquet"
    table = {"id": [1, 2, 3], "text": ["Der Kurs stieg.", None, "Titel\n\nHier weiterlesen..."]}
    pq.write_table(pyarrow.table(table), source)
    output = tmp_path / "out.parquet"
    assert cli.main(["analyze", str(source), "-o", str(output)]) == 1
    rows = pq.read_table(output).to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[2]["label"] == "promotional" and rows[2]["clean_text"] == "Titel"
    assert rows[2]["segments"][1]["text"] == "Hier weiterlesen..."
    assert rows[1]["_error"] == {"line": 2, "reason": "missing field 'text'"}
    assert rows[1]["label"] is None and rows[0]["_error"] is None
    assert not output.with_name("out.parquet.parts").exists()
    assert not output.with_name("out.parquet.progress.json").exists()


def test_parquet_without_pyarrow_says_how_to_install_it(
    keyword_model, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    source = tmp_path / "in.parquet"
    source.write_bytes(b"PAR1")
    assert cli.main(["score", str(source)]) == 2
    assert 'pip install "promofilter[scale]"' in capsys.readouterr().err


# --- analyze and clean -----------------------------------------------------------------------


def test_analyze_adds_segments_label_share_and_clean_text(keyword_model, tmp_path, capsys):
    document = "Der Kurs stieg um 3 Prozent. Hier weiterlesen...\n\nDer Umsatz wuchs."
    source = write_lines(tmp_path / "docs.jsonl", [json.dumps({"id": "d1", "text": document})])
    assert cli.main(["analyze", str(source)]) == 0
    (record,) = read_jsonl(capsys.readouterr().out)
    assert record["id"] == "d1" and record["label"] == "promotional"
    assert record["clean_text"] == "Der Kurs stieg um 3 Prozent.\n\nDer Umsatz wuchs."
    assert [(s["label"], s["text"]) for s in record["segments"]] == [
        ("factual", "Der Kurs stieg um 3 Prozent."),
        ("promotional", "Hier weiterlesen..."),
        ("factual", "Der Umsatz wuchs."),
    ]
    for segment in record["segments"]:
        assert document[segment["start"] : segment["end"]] == segment["text"]
    assert record["promo_share"] == pytest.approx(19 / (28 + 19 + 17), abs=1e-6)


def test_analyze_takes_a_plain_text_file_as_one_document(keyword_model, seed_article, capsys):
    assert cli.main(["analyze", str(seed_article)]) == 0
    (record,) = read_jsonl(capsys.readouterr().out)
    assert record["text"] == seed_article.read_text(encoding="utf-8")
    assert len(record["segments"]) == 18


def test_clean_prints_the_seed_article_without_its_promotion(keyword_model, seed_article, capsys):
    assert cli.main(["clean", str(seed_article)]) == 0
    lines = seed_article.read_text(encoding="utf-8").splitlines(keepends=True)
    assert capsys.readouterr().out == "".join(lines[:15]).rstrip("\n")


def test_clean_keeps_bytes_exactly_when_nothing_is_promotional(model_dir, tmp_path, capsysbinary):
    source = tmp_path / "crlf.txt"
    data = b"Titel\r\n\r\n  Erster Absatz. Zweiter Satz.\r\n\r\n\r\nEnde\r\n"
    source.write_bytes(data)
    assert cli.main(["clean", str(source), "--model", str(model_dir), "--threshold", "1"]) == 0
    assert capsysbinary.readouterr().out == data
    assert cli.main(["clean", str(source), "--model", str(model_dir), "--threshold", "0"]) == 0
    assert capsysbinary.readouterr().out == b""


def test_clean_reads_stdin(keyword_model, monkeypatch, capsys):
    set_stdin(monkeypatch, b"Der Kurs stieg.\nJetzt kaufen!\n")
    assert cli.main(["clean", "-"]) == 0
    assert capsys.readouterr().out == "Der Kurs stieg.\n"


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["score", "analyze", "clean"])
def test_a_missing_input_file_exits_2_naming_the_path(command, tmp_path, capsys):
    missing = tmp_path / "nowhere.jsonl"
    assert cli.main([command, str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err


def test_the_output_may_not_overwrite_the_input(tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": "Hallo"})])
    assert cli.main(["score", str(source), "-o", str(source)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert source.read_text() == '{"text": "Hallo"}\n'


def test_an_output_suffix_that_cannot_hold_records_exits_2_naming_the_file(tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": "Hallo"})])
    output = tmp_path / "out.txt"
    assert cli.main(["score", str(source), "-o", str(output)]) == 2
    error = capsys.readouterr().err
    assert f"{output}: its suffix '.txt' means 'text', which cannot hold records" in error
    assert "--output-format" in error and not output.exists()
    assert cli.main(["score", str(source), "-o", str(output), "--output-format", "csv"]) == 0


def test_a_file_that_is_not_utf8_exits_2(tmp_path, capsys):
    source = tmp_path / "latin1.txt"
    source.write_bytes("Gr\xfc\xdfe".encode("latin-1"))
    assert cli.main(["clean", str(source)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_a_model_that_cannot_load_exits_3(tmp_path, seed_article, monkeypatch, capsys):
    assert cli.main(["clean", str(seed_article), "--model", str(tmp_path)]) == 3
    assert "model.onnx not found" in capsys.readouterr().err
    monkeypatch.setattr(promofilter.model, "default_model_path", lambda: tmp_path / "default")
    assert cli.main(["score", str(seed_article)]) == 3
    assert "default model is missing" in capsys.readouterr().err


# --- progress --------------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_rate_share_and_eta():
    now = [0.0]
    stream = FakeTTY()
    progress = Progress(total=1000, stream=stream, interval=0, clock=lambda: now[0])
    now[0] = 10.0
    progress.update(50, position=250)
    assert "50 records" in stream.getvalue()
    assert "5.0 records/s" in stream.getvalue()
    assert "25%" in stream.getvalue() and "ETA 00:30" in stream.getvalue()
    progress.close()
    assert stream.getvalue().endswith("\n")


def test_progress_is_silent_off_a_terminal_or_when_disabled():
    for stream, enabled in ((io.StringIO(), True), (FakeTTY(), False)):
        progress = Progress(total=10, stream=stream, enabled=enabled, interval=0)
        progress.update(5, position=5)
        progress.close()
        assert stream.getvalue() == ""


def test_the_cli_draws_progress_on_a_terminal_unless_quiet(
    keyword_model, tmp_path, monkeypatch, capsys
):
    source = write_lines(
        tmp_path / "in.jsonl", [json.dumps({"text": f"Satz {i}."}) for i in range(5)]
    )
    terminal = FakeTTY()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["score", str(source), "-o", str(tmp_path / "o.jsonl")]) == 0
    assert "5 records" in terminal.getvalue() and "100%" in terminal.getvalue()
    terminal.truncate(0)
    terminal.seek(0)
    assert cli.main(["score", str(source), "-o", str(tmp_path / "o.jsonl"), "--quiet"]) == 0
    assert terminal.getvalue() == ""


# --- as a program ----------------------------------------------------------------------------


def test_the_command_runs_as_a_subprocess(model_dir, tmp_path):
    source = write_lines(
        tmp_path / "in.jsonl",
        [json.dumps({"id": 1, "text": "Der Kurs stieg."}), "kaputt"],
    )
    result = subprocess.run(
        [sys.executable, "-m", "promofilter", "score", str(source), "--model", str(model_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    first, second = read_jsonl(result.stdout)
    assert first["id"] == 1 and 0.0 <= first["promo_score"] <= 1.0
    assert second["_error"]["line"] == 2
    assert "1 malformed record(s)" in result.stderr
    assert "\r" not in result.stderr  # stderr is a pipe: no progress bar
