from dataclasses import replace

import pytest

from training.corpus import (
    AMBIGUOUS,
    HARD_NEGATIVE_KINDS,
    PROMOTIONAL,
    PROMOTIONAL_KINDS,
    REGISTERS,
    STYLES,
    Document,
    Segment,
    read_documents,
    write_documents,
)
from training.split import (
    FRACTIONS,
    SPLITS_DIR,
    assign_splits,
    duplicate_groups,
    is_hard,
    leaks,
    make_splits,
    read_handwritten,
)
from training.split import (
    main as split_main,
)

LONG = (
    "Der Vorstand bestätigte am Dienstag die Prognose für das laufende Geschäftsjahr und "
    "kündigte zusätzlich ein Aktienrückkaufprogramm über 500 Millionen Euro an."
)


def doc(doc_id: str, *texts: str) -> Document:
    return Document(doc_id, "test", tuple(Segment(t, "factual") for t in texts))


@pytest.fixture(scope="module")
def committed() -> dict[str, list[Document]]:
    return {
        name: read_documents(SPLITS_DIR / f"{name}.jsonl") for name in [*FRACTIONS, "test-hard"]
    }


def test_committed_splits_are_current_and_leak_free():
    assert split_main(["--check"]) == 0


def test_no_document_or_near_duplicate_crosses_splits(committed):
    assert leaks(committed) == []
    ids = [d.id for name in FRACTIONS for d in committed[name]]
    documents, fixed = read_handwritten()
    assert len(ids) == len(set(ids)) == len(documents) + sum(map(len, fixed.values()))


def test_dev_and_test_hold_only_handwritten_documents(committed):
    for name in ("dev", "test", "test-hard"):
        assert {d.source for d in committed[name]} == {"handwritten"}


def test_hand_written_documents_use_the_metadata_vocabularies():
    """The evaluation breaks figures down by style, register and kind; a misspelt value would
    open a group of its own."""
    documents, fixed = read_handwritten()
    problems = []
    for document in [*documents, *(d for chosen in fixed.values() for d in chosen)]:
        if document.source != "handwritten" or not document.topic:
            problems.append(f"{document.id}: source {document.source!r}, topic {document.topic!r}")
        if document.style not in STYLES or not set(document.register) <= set(REGISTERS):
            problems.append(f"{document.id}: style {document.style!r}, {document.register}")
        for index, segment in enumerate(document.segments):
            allowed = {
                PROMOTIONAL: PROMOTIONAL_KINDS,
                AMBIGUOUS: (*PROMOTIONAL_KINDS, *HARD_NEGATIVE_KINDS),
            }.get(segment.label, HARD_NEGATIVE_KINDS)
            if segment.kind is not None and segment.kind not in allowed:
                problems.append(f"{document.id}#{index}: kind {segment.kind!r} on {segment.label}")
    assert problems == []


def test_hard_subset_is_a_subset_of_test(committed):
    test_ids = {d.id for d in committed["test"]}
    assert committed["test-hard"]
    assert {d.id for d in committed["test-hard"]} <= test_ids
    assert all(is_hard(d) for d in committed["test-hard"])


def test_near_duplicates_are_grouped():
    base = (
        "Die Zentralbank hält den Leitzins stabil und verweist auf die zuletzt gesunkene Inflation "
        "im Euroraum. Mehrere Ratsmitglieder hatten zuvor vor einer zu frühen Lockerung gewarnt, "
        "weil die Löhne weiter kräftig steigen und die Dienstleistungspreise hartnäckig bleiben."
    )
    documents = [
        doc("a-1", base),
        doc("a-2", base.replace("stabil", "unverändert")),  # one word differs
        doc("a-3", "Ganz anderer Text über Fußball in Bremen", LONG),
        doc("a-4", "Noch ein Bericht, diesmal über Wetter", LONG),  # shares a long segment
        doc("a-5", "Völlig eigenständige Meldung über eine Brücke in Kassel und ihre Sperrung"),
    ]
    groups = duplicate_groups(documents)
    assert ["a-1", "a-2"] in groups and ["a-3", "a-4"] in groups and ["a-5"] in groups


def test_a_near_duplicate_group_always_lands_in_one_split():
    texts = [
        f"Meldung Nummer {n} über ein ganz eigenes Thema mit eigenen Worten {n}" for n in range(30)
    ]
    documents = [doc(f"x-{n}", text) for n, text in enumerate(texts)]
    documents.append(replace(doc("x-copy", texts[0] + " heute")))
    for seed in range(5):
        assignment = assign_splits(documents, seed)
        assert assignment["x-copy"] == assignment["x-0"]


def test_assignment_is_stable_and_seeded():
    documents = [
        doc(f"p-{n}", f"Ein eigener Bericht Nummer {n} mit anderem Inhalt als {n + 1}")
        for n in range(40)
    ]
    first = assign_splits(documents, seed=13)
    assert first == assign_splits(list(reversed(documents)), seed=13)
    assert first != assign_splits(documents, seed=14)
    counts = {name: sum(split == name for split in first.values()) for name in FRACTIONS}
    assert counts == {"train": 24, "dev": 8, "test": 8}


def test_make_splits_keeps_every_document_once():
    documents = [doc(f"q-{n}", f"Text {n} " * 3 + str(n)) for n in range(10)]
    splits = make_splits(documents)
    assert sorted(d.id for name in FRACTIONS for d in splits[name]) == sorted(
        d.id for d in documents
    )


def _distinct_documents(prefix: str, count: int) -> list[Document]:
    return [
        doc(f"{prefix}-{n}", f"Eigene Meldung {prefix} {n} über Thema {n * 7} und Ort {n * 13}")
        for n in range(count)
    ]


@pytest.mark.parametrize("split", ["train", "dev"])
def test_fixed_documents_join_their_split_and_move_nothing_else(split):
    documents = _distinct_documents("r", 20)
    extra = _distinct_documents("s", 5)
    before = make_splits(documents)
    after = make_splits(documents, fixed={split: extra})
    for name in {"train", "dev", "test", "test-hard"} - {split}:
        assert after[name] == before[name]
    assert sorted(d.id for d in after[split]) == sorted(
        [d.id for d in before[split]] + [d.id for d in extra]
    )


def test_fixed_documents_under_an_unknown_split_are_refused():
    with pytest.raises(ValueError, match=r"no split named \['validation'\]"):
        make_splits(_distinct_documents("r", 5), fixed={"validation": _distinct_documents("s", 1)})


@pytest.mark.parametrize("split", ["train", "dev"])
def test_a_fixed_near_duplicate_of_a_test_document_is_a_leak(split):
    documents = _distinct_documents("r", 20)
    test_document = make_splits(documents)["test"][0]
    copy = doc("s-copy", test_document.segments[0].text + " heute")
    problems = leaks(make_splits(documents, fixed={split: [copy]}))
    assert len(problems) == 1
    assert f"{test_document.id} (test)" in problems[0] and f"s-copy ({split})" in problems[0]


def test_a_document_id_in_two_directories_is_refused(tmp_path):
    write_documents(tmp_path / "split" / "a.jsonl", _distinct_documents("r", 3))
    write_documents(tmp_path / "dev" / "b.jsonl", _distinct_documents("r", 1))
    with pytest.raises(ValueError, match=r"\['r-0'\]"):
        read_handwritten(tmp_path / "split", {"dev": tmp_path / "dev"})


def test_read_handwritten_reads_each_fixed_directory_that_exists(tmp_path):
    write_documents(tmp_path / "split" / "a.jsonl", _distinct_documents("r", 3))
    write_documents(tmp_path / "dev" / "b.jsonl", _distinct_documents("s", 2))
    directories = {"train": tmp_path / "missing", "dev": tmp_path / "dev"}
    documents, fixed = read_handwritten(tmp_path / "split", directories)
    assert [d.id for d in documents] == ["r-0", "r-1", "r-2"]
    assert fixed["train"] == [] and [d.id for d in fixed["dev"]] == ["s-0", "s-1"]
