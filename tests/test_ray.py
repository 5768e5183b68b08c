"""promofilter.ray.score_dataset and ``score --engine ray`` on a local Ray cluster of 2 CPUs.

Both are compared record by record with the single-process path. Ray forms its own batches,
and a text's score may differ with its batch mates by float rounding (not more: the int8
graph's activation scales are fixed), so the library test scores one text per ONNX Runtime
call on both sides and compares exactly; the command-line test runs the default batches and
allows the sixth decimal place to differ.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import promofilter
import pytest
from promofilter import cli
from test_batch import SENTENCES
from test_cli import read_jsonl, write_lines

ray = pytest.importorskip("ray", reason='Ray Data is the "scale" extra')


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local cluster for the session: starting Ray takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def texts(count: int) -> list[str]:
    return [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(count)]


def test_score_dataset_equals_the_single_process_path(ray_cluster, model_dir):
    import promofilter.ray

    items = [{"id": i, "text": text} for i, text in enumerate(texts(300))]
    items[7]["text"] = None  # a row without text gets nulls, the rest go on
    valid = [item["text"] for item in items if item["text"] is not None]
    local = promofilter.load(model_dir, batch_size=1)
    # the random smoke model's scores sit close together: cut at their median, so that both
    # labels occur and a label mix-up would show
    local.threshold = float(sorted(local.predict_proba(valid))[len(valid) // 2])
    expected = local.score_fields(valid)
    dataset = ray.data.from_items(items, override_num_blocks=6)
    scored = promofilter.ray.score_dataset(
        dataset,
        model=model_dir,
        threshold=local.threshold,
        batch_size=64,
        concurrency=2,
        num_cpus_per_actor=1,
        model_batch_size=1,
    )
    rows = scored.take_all()
    assert [row["id"] for row in rows] == list(range(300))  # every row once, in order
    assert rows[7]["promo_score"] is None and rows[7]["label"] is None
    del rows[7]
    assert [{"promo_score": r["promo_score"], "label": r["label"]} for r in rows] == expected
    assert {r["label"] for r in rows} == {"promotional", "factual"}  # both labels occur


def documents(count: int) -> list[str]:
    """Documents of one to four paragraphs, so that each has segments in context."""
    sentences = texts(count * 4)
    return ["\n\n".join(sentences[4 * i : 4 * i + 1 + i % 4]) for i in range(count)]


def test_analyze_dataset_equals_the_single_process_path(ray_cluster, model_dir):
    import promofilter.ray

    items = [{"id": i, "text": text} for i, text in enumerate(documents(60))]
    items[3]["text"] = 17  # not a string: nulls in every added column, the rest go on
    valid = [item["text"] for item in items if isinstance(item["text"], str)]
    local = promofilter.load(model_dir, batch_size=1)
    scores = local.predict_proba([t for text in valid for t in text.split("\n\n")])
    local.threshold = float(sorted(scores)[len(scores) // 2])  # both labels occur
    expected = [analysis.to_dict() for analysis in local.analyze_many(valid)]
    analysed = promofilter.ray.analyze_dataset(
        ray.data.from_items(items, override_num_blocks=4),
        model=model_dir,
        threshold=local.threshold,
        batch_size=16,
        concurrency=2,
        model_batch_size=1,
    )
    rows = analysed.take_all()
    assert [row["id"] for row in rows] == list(range(60))
    added = ("segments", "label", "promo_share", "clean_text")
    assert all(rows[3][name] is None for name in added)
    del rows[3]
    assert [{name: row[name] for name in added} for row in rows] == expected
    assert {segment["label"] for row in rows for segment in row["segments"]} == {
        "promotional",
        "factual",
    }


def test_an_input_column_named_like_an_added_one_is_replaced_in_place(ray_cluster, model_dir):
    import promofilter.ray

    items = [{"label": "gold", "text": text, "id": i} for i, text in enumerate(texts(20))]
    scored = promofilter.ray.score_dataset(ray.data.from_items(items), model=model_dir)
    rows = scored.take_all()
    local = promofilter.load(model_dir).score_fields([item["text"] for item in items])
    assert [list(row) for row in rows] == [["label", "text", "id", "promo_score"]] * 20
    assert [row["label"] for row in rows] == [fields["label"] for fields in local]


def test_score_dataset_names_a_missing_text_column(ray_cluster, model_dir):
    import promofilter.ray

    with pytest.raises(ValueError, match="no column 'body'"):
        promofilter.ray.score_dataset(ray.data.from_items([{"text": "x"}]), text_column="body")


def test_the_cli_ray_engine_equals_the_local_engine_on_a_directory(
    ray_cluster, model_dir, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    all_texts = texts(120)
    for part in range(2):  # a directory of two files, read in name order
        write_lines(
            folder / f"part-{part}.jsonl",
            [
                json.dumps({"id": i, "text": all_texts[i]}, ensure_ascii=False)
                for i in range(part * 60, part * 60 + 60)
            ],
        )
    joined = tmp_path / "all.jsonl"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(folder.iterdir())))
    common = ["--model", str(model_dir), "--threshold", "0.5", "-q"]

    assert cli.main(["score", str(joined), "-o", str(tmp_path / "local.jsonl"), *common]) == 0
    output = tmp_path / "ray.parquet"
    assert cli.main(["score", str(folder), "-o", str(output), "--engine", "ray", *common]) == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(output).to_pylist()
    expected = read_jsonl((tmp_path / "local.jsonl").read_text())
    assert len(rows) == len(expected) == 120
    for row, local in zip(rows, expected, strict=True):
        for key in ("id", "text", "label"):
            assert row[key] == local[key]
        assert row["promo_score"] == pytest.approx(local["promo_score"], abs=1.5e-6)


def test_the_cli_ray_engine_analyzes_as_the_local_engine(ray_cluster, model_dir, tmp_path):
    lines = [json.dumps({"id": i, "text": text}) for i, text in enumerate(documents(30))]
    lines.insert(5, json.dumps({"id": "no-text"}))
    source = write_lines(tmp_path / "docs.jsonl", lines)
    common = ["--model", str(model_dir), "--threshold", "0.5", "-q"]
    for engine in ("local", "ray"):
        output = str(tmp_path / f"{engine}.jsonl")
        assert cli.main(["analyze", str(source), "-o", output, "--engine", engine, *common]) == 1
    local = read_jsonl((tmp_path / "local.jsonl").read_text())
    rows = read_jsonl((tmp_path / "ray.jsonl").read_text())
    assert len(rows) == len(local) == 31
    for row, expected in zip(rows, local, strict=True):
        assert row.keys() == expected.keys()
        if "_error" in expected:  # the record without text: an error record on both engines
            assert row["id"] == expected["id"] == "no-text"
            continue
        for key in ("id", "text", "label", "clean_text"):
            assert row[key] == expected[key]
        assert row["promo_share"] == pytest.approx(expected["promo_share"], abs=1e-6)
        for segment, local_segment in zip(row["segments"], expected["segments"], strict=True):
            assert segment["score"] == pytest.approx(local_segment.pop("score"), abs=1.5e-6)
            assert {k: v for k, v in segment.items() if k != "score"} == local_segment


def test_a_record_ray_cannot_read_stops_the_job_with_a_clear_error_and_no_output(
    ray_cluster, model_dir, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    write_lines(folder / "part-0.jsonl", [json.dumps({"text": t}) for t in texts(40)])
    write_lines(folder / "part-1.jsonl", [json.dumps({"text": "gut"}), '{"text": kaputt'])
    common = ["--model", str(model_dir), "--engine", "ray", "-q"]
    for source in (folder / "part-1.jsonl", folder):  # fails at the first block, or later
        output = tmp_path / "out.jsonl"
        assert cli.main(["score", str(source), "-o", str(output), *common]) == 2
        error = capsys.readouterr().err
        assert f"{source}: Ray Data could not read it (ValueError:" in error
        assert "--engine local turns each bad record into an error record" in error
        assert not output.exists()  # no half output that looks whole


def test_the_cli_ray_engine_treats_bad_records_as_the_local_engine(
    ray_cluster, model_dir, tmp_path, capsys
):
    lines = [json.dumps({"id": i, "text": text}) for i, text in enumerate(texts(30))]
    lines[4] = json.dumps({"id": "no-text"})
    lines[17] = json.dumps({"id": "too-long", "text": "Der Kurs stieg. " * 20})
    source = write_lines(tmp_path / "in.jsonl", lines)
    common = ["--model", str(model_dir), "--max-chars", "200", "--id-field", "id", "-q"]
    for engine in ("local", "ray"):
        out, errors = str(tmp_path / f"{engine}.jsonl"), str(tmp_path / f"{engine}-errors.jsonl")
        argv = ["score", str(source), "-o", out, "--errors", errors, "--engine", engine]
        assert cli.main([*argv, *common]) == 1
        assert "the first: " in capsys.readouterr().err
    local_errors = read_jsonl((tmp_path / "local-errors.jsonl").read_text())
    assert [e["id"] for e in local_errors] == ["no-text", "too-long"]
    assert "(--max-chars)" in local_errors[1]["_error"]["reason"]
    assert read_jsonl((tmp_path / "ray-errors.jsonl").read_text()) == local_errors
    local = read_jsonl((tmp_path / "local.jsonl").read_text())
    rows = read_jsonl((tmp_path / "ray.jsonl").read_text())
    assert [r["id"] for r in rows] == [r["id"] for r in local] and len(rows) == 28
    assert [r["label"] for r in rows] == [r["label"] for r in local]

    strict = str(tmp_path / "strict.jsonl")
    argv = ["score", str(source), "-o", strict, "--engine", "ray", "--strict", *common]
    assert cli.main(argv) == 1
    assert f"stopped at the first malformed record ({source}, row 5: missing field" in (
        capsys.readouterr().err
    )
    stopped = read_jsonl(Path(strict).read_text())
    assert [r["id"] for r in stopped] == [0, 1, 2, 3, "no-text"]  # as the local engine stops
    assert "_error" in stopped[-1]


def test_the_cli_ray_engine_refuses_what_it_cannot_do(tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": "Hallo"})])
    assert cli.main(["score", str(source), "-o", str(tmp_path / "o.jsonl"), "--engine", "ray",
                     "--resume"]) == 2  # fmt: skip
    assert "--resume works with --engine local only" in capsys.readouterr().err
    assert cli.main(["score", "-", "--engine", "ray"]) == 2
    assert "not standard input" in capsys.readouterr().err


def test_score_dataset_without_ray_says_how_to_install_it(monkeypatch):
    import sys

    import promofilter.ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "promofilter\[scale\]"'):
        promofilter.ray.score_dataset(object())


def test_threads_follow_the_cpus_per_actor(model_dir):
    from promofilter.ray import PromoScorer

    scorer = PromoScorer(str(model_dir), "text", None, threads=3, model_batch_size=4)
    assert scorer.model.threads == 3 and scorer.model.batch_size == 4
    assert isinstance(scorer.model, promofilter.PromoFilter)
    assert Path(scorer.model.path) == Path(model_dir)


def test_the_actors_load_the_model_with_or_without_its_cascade(cascade_model):
    from promofilter.ray import PromoScorer

    for cascade in (True, False):
        scorer = PromoScorer(str(cascade_model), "text", None, 1, 4, cascade=cascade)
        assert (scorer.model.cascade is not None) == cascade
