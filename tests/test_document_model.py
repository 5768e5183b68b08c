"""The models that read whole documents: the teacher's windows and pooling, the student's
batches, and the student's parts as the runtime gets them."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the 'train' extra")

from transformers import BertConfig  # noqa: E402

from training.document_model import (  # noqa: E402
    UNLABELED,
    DocumentClassifier,
    HierarchicalClassifier,
    collate_documents,
    collate_windows,
    document_student_from_teacher,
    document_windows,
    predict_documents,
    student_config,
    student_from_document_teacher,
    teacher_config,
)


class WordTokenizer:
    """Whitespace words as token ids (their length + 10): enough to count tokens."""

    cls_token_id, sep_token_id, pad_token_id = 0, 2, 1

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None):
        rows = []
        for text in texts:
            ids = [10 + len(word) for word in text.split()]
            if add_special_tokens:
                ids = [self.cls_token_id, *ids, self.sep_token_id]
            rows.append(ids[:max_length] if truncation else ids)
        return {"input_ids": rows}


def tiny_bert(layers: int = 2) -> BertConfig:
    return BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=1,
    )


def test_windows_hold_every_segment_once_in_order_within_the_token_limit():
    document = [" ".join(["w"] * n) for n in (5, 9, 3, 12, 1, 7)]
    windows = document_windows(WordTokenizer(), [document, ["kurz"]], max_tokens=20)
    first = [w for w in windows if w.document == 0]
    # 1 + (5 + 1) + (9 + 1) = 17 tokens; the third segment would make 21
    assert [w.first for w in first] == [0, 2, 5]  # cut between segments, never inside one
    assert all(len(w.input_ids) <= 20 for w in windows)
    assert sum(w.segments for w in first) == len(document)
    window = first[0]
    assert window.input_ids[0] == WordTokenizer.cls_token_id
    assert window.segment_index == [-1] + [0] * 5 + [-1] + [1] * 9 + [-1]
    assert [w.document for w in windows] == [0, 0, 0, 1]


def test_a_segment_longer_than_a_window_is_cut_to_the_segment_limit():
    windows = document_windows(
        WordTokenizer(), [["a " * 300, "b"]], max_tokens=64, max_segment_tokens=20
    )
    assert windows[0].segment_index.count(0) == 19  # plus its [SEP]
    assert sum(w.segments for w in windows) == 2


def test_the_teacher_pools_each_segment_over_its_own_tokens_only():
    torch.manual_seed(0)
    model = DocumentClassifier(teacher_config(tiny_bert())).eval()
    rows = [
        {"input_ids": [0, 11, 12, 2, 13, 2], "segment_index": [-1, 0, 0, -1, 1, -1], "labels": []},
        {"input_ids": [0, 14, 2], "segment_index": [-1, 0, -1], "labels": []},
    ]
    feed = collate_windows(rows, pad_id=1)
    feed.pop("labels")
    with torch.no_grad():
        pooled = model.segment_embeddings(**feed)
        hidden = model.bert(
            input_ids=feed["input_ids"], attention_mask=feed["attention_mask"]
        ).last_hidden_state
    assert pooled.shape == (3, 16)
    torch.testing.assert_close(pooled[0], hidden[0, 1:3].mean(0))
    torch.testing.assert_close(pooled[1], hidden[0, 4])
    torch.testing.assert_close(pooled[2], hidden[1, 1])


def test_the_teacher_leaves_unlabeled_segments_out_of_the_loss():
    torch.manual_seed(0)
    model = DocumentClassifier(teacher_config(tiny_bert())).eval()
    row = {"input_ids": [0, 11, 2, 12, 2], "segment_index": [-1, 0, -1, 1, -1]}
    with torch.no_grad():
        both = model(**collate_windows([{**row, "labels": [1.0, 0.0]}], pad_id=1))
        one = model(**collate_windows([{**row, "labels": [1.0, UNLABELED]}], pad_id=1))
    z = both.logits[:, 1]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch.testing.assert_close(both.loss, bce(z, torch.tensor([1.0, 0.0])))
    torch.testing.assert_close(one.loss, bce(z[:1], torch.tensor([1.0])))
    # two-column logits [0, z]: a softmax gives sigmoid(z)
    torch.testing.assert_close(torch.softmax(both.logits, -1)[:, 1], torch.sigmoid(z))


def test_predict_documents_gives_each_segment_its_windows_score():
    torch.manual_seed(0)
    model = DocumentClassifier(teacher_config(tiny_bert())).eval()
    documents = [["eins zwei", "drei"], ["vier fünf sechs", "sieben", "acht"]]
    scores = predict_documents(model, WordTokenizer(), documents)
    assert [len(s) for s in scores] == [2, 3]
    # the same document scored alone gives the same scores (batching is only padding)
    alone = predict_documents(model, WordTokenizer(), documents[1:])
    np.testing.assert_allclose(scores[1], alone[0], atol=1e-6)


def student_pair(context_layers: int = 2):
    torch.manual_seed(0)
    teacher = DocumentClassifier(teacher_config(tiny_bert(layers=4))).eval()
    return teacher, student_from_document_teacher(teacher, 2, context_layers=context_layers).eval()


def test_the_student_starts_from_the_teachers_layers_and_classifier():
    teacher, student = student_pair()
    assert student.config.student_of_layers == [0, 3]
    torch.testing.assert_close(
        student.bert.encoder.layer[1].output.dense.weight,
        teacher.bert.encoder.layer[3].output.dense.weight,
    )
    own, own_bias = student.own_readout()
    torch.testing.assert_close(own, teacher.classifier.weight[0])
    assert own_bias == pytest.approx(teacher.classifier.bias.item())


def test_a_document_reading_student_is_the_teachers_spread_layers_and_classifier():
    torch.manual_seed(0)
    teacher = DocumentClassifier(teacher_config(tiny_bert(layers=4))).eval()
    student = document_student_from_teacher(teacher, 2).eval()
    assert student.config.num_hidden_layers == 2 and student.config.student_of_layers == [0, 3]
    assert teacher.config.num_hidden_layers == 4
    torch.testing.assert_close(
        student.bert.encoder.layer[1].attention.self.query.weight,
        teacher.bert.encoder.layer[3].attention.self.query.weight,
    )
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
    # a copy, not a view: training the student leaves the teacher as it is
    assert student.classifier.weight.data_ptr() != teacher.classifier.weight.data_ptr()
    scores = predict_documents(student, WordTokenizer(), [["eins zwei", "drei"]])
    assert scores[0].shape == (2,)


def test_the_students_batches_flatten_documents_into_segments():
    items = [{"segments": [[0, 11, 2], [0, 12, 13, 2]], "labels": [1.0, 0.0]}]
    items.append({"segments": [[0, 14, 2]], "labels": [UNLABELED]})
    feed = collate_documents(items, pad_id=1)
    assert feed["input_ids"].tolist() == [[0, 11, 2, 1], [0, 12, 13, 2], [0, 14, 2, 1]]
    assert feed["attention_mask"].sum(1).tolist() == [3, 4, 3]
    assert feed["segment_document"].tolist() == [0, 0, 1]
    assert feed["segment_position"].tolist() == [0, 1, 0]
    assert feed["labels"].tolist() == [1.0, 0.0, UNLABELED]


@pytest.mark.parametrize("context_layers", [1, 2])
def test_the_runtime_parts_of_the_student_compute_its_scores(context_layers):
    """Encoder (exported) plus document head (numpy) must give the trained student's scores,
    each document on its own, whatever else shares the training batch."""
    _, student = student_pair(context_layers)
    documents = [[[0, 11, 12, 2], [0, 13, 2], [0, 14, 15, 16, 2]], [[0, 17, 2]]]
    feed = collate_documents(
        [{"segments": d, "labels": [0.0] * len(d)} for d in documents], pad_id=1
    )
    feed.pop("labels")
    with torch.no_grad():
        expected = torch.softmax(student(**feed).logits, -1)[:, 1].numpy()
        encoder = student.encoder()
        pooled = encoder.pooled(feed["input_ids"], feed["attention_mask"]).numpy()
    head = student.document_head()
    assert len(head.layers) == context_layers
    scores = np.concatenate([head.in_document(pooled[:3]), head.in_document(pooled[3:])])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    with torch.no_grad():
        own = encoder(input_ids=feed["input_ids"], attention_mask=feed["attention_mask"]).logits
    np.testing.assert_allclose(
        (own[:, 1] - own[:, 0]).numpy(), pooled @ head.own + head.own_bias, atol=1e-5
    )


def test_the_student_config_records_its_context():
    config = student_config(tiny_bert(layers=4), num_layers=2, intermediate_size=24)
    assert (config.num_hidden_layers, config.intermediate_size) == (2, 24)
    assert config.context_width == 128 and config.architectures == ["HierarchicalClassifier"]
    assert isinstance(HierarchicalClassifier(config).context.out, torch.nn.Linear)
    single = student_config(tiny_bert(layers=4), 2, None, context_layers=1)
    assert (single.context_layers, config.context_layers) == (1, 2)
