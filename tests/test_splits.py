from dataclasses import replace

import pytest

from training.corpus import Document, Segment, read_documents
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
    assert len(ids) == len(set(ids)) == len(read_handwritten())


def test_dev_and_test_hold_only_handwritten_documents(committed):
    for name in ("dev", "test", "test-hard"):
        assert {d.source for d in committed[name]} == {"handwritten"}


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
