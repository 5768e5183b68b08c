import random
import re

from training.corpus import PROMOTIONAL, Document, Segment, read_documents, write_documents
from training.generate import (
    add_noise,
    fill_slots,
    generate_variants,
    promotional_blocks,
    recombine,
)


def test_variants_are_valid_reproducible_and_keep_their_labels(tmp_path, tiny_corpus):
    documents = read_documents(tiny_corpus)
    variants = generate_variants(documents, per_document=5, seed=3)
    assert len(variants) == 5 * len(documents)
    assert variants == generate_variants(documents, per_document=5, seed=3)
    assert variants != generate_variants(documents, per_document=5, seed=4)
    path = tmp_path / "generated.jsonl"
    write_documents(path, variants)
    assert len(read_documents(path)) == len(variants)  # every variant passes the format check
    recipes = {v.source.split(":")[1] for v in variants}
    assert recipes <= {"slots", "recombine", "factual-only", "whole-promo"}
    for variant in variants:
        recipe = variant.source.split(":")[1]
        if recipe == "factual-only":
            assert not variant.has_promotion
        if recipe == "whole-promo":
            assert all(s.label == PROMOTIONAL for s in variant.segments)


def test_slot_filling_is_consistent_within_a_document():
    facts = "Siemens meldet am 14. September 3,2 Milliarden Euro Umsatz in München."
    teaser = Segment("Siemens-Aktie: Jetzt die Analyse lesen!", "promotional", "teaser")
    document = Document("d", "test", (Segment(facts, "factual"), teaser))
    filled = fill_slots(document, random.Random(0))
    first, second = (s.text for s in filled.segments)
    assert "Siemens" not in first and "München" not in first
    company = second.split("-Aktie")[0]
    assert first.startswith(company)
    assert re.search(r"am \d{1,2}\. \w+ \d+,\d Milliarden", first)
    assert [s.label for s in filled.segments] == ["factual", "promotional"]


def test_recombination_places_a_promotional_block_in_a_factual_body():
    body = Document("b", "t", tuple(Segment(f"Absatz {n}.", "factual") for n in range(4)))
    donor = Document("p", "t", (Segment("Fakt.", "factual"), Segment("Anzeige", PROMOTIONAL),
                                Segment("Jetzt testen!", PROMOTIONAL)))  # fmt: skip
    (block,) = promotional_blocks(donor)
    placements = {recombine(body, block, random.Random(seed)).placement for seed in range(20)}
    assert placements >= {"start", "middle", "end"}


def test_noise_keeps_segments_non_empty_and_can_fold_umlauts():
    document = Document(
        "n",
        "t",
        tuple(Segment(f"Größere Übernahme Nr. {n} für Bäcker.", "factual") for n in range(6)),
    )
    folded = [add_noise(document, random.Random(seed)) for seed in range(40)]
    assert all(s.text and s.text == s.text.strip() for d in folded for s in d.segments)
    with_folding = [d for d in folded if "ascii-umlauts" in d.register]
    assert with_folding and all(
        "ä" not in s.text and "ß" not in s.text for d in with_folding for s in d.segments
    )
