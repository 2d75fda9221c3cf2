"""Every shape of data read right, or refused with the option that settles it: labelled items, pairs, triplets
(one or more negatives), scored pairs; from CSV files (with and without a header), tuples, dicts, DataFrames,
Hugging Face datasets and Documents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from finetuner.data import (
    LABEL_TAG,
    ROLE_TAG,
    SCORE_TAG,
    CSVOptions,
    Document,
    DocumentArray,
    load_data,
    read_shape,
    read_table,
)
from finetuner.data.shapes import LabelledData, PairData, ScoredPairData, TripletData, data_kind
from finetuner.errors import ConfigError, DataError

TRIPLETS = "anchor,positive,negative\nhow tall is it,it is 3 m tall,it is blue\nwhat colour,it is blue,it is 3 m tall\n"


# ---- the two misread CSVs of the issue ---------------------------------------------------------------------------
def test_a_three_column_csv_keeps_its_score(write_csv: Callable[..., Path]) -> None:
    for text in ("query,document,score\nq1,d1,0.0\nq2,d2,1\n", "q1,d1,0.0\nq2,d2,1\n"):  # header or not
        data = read_shape(write_csv(text))
        assert isinstance(data, ScoredPairData) and data_kind(data) == "scored"
        assert (data.left, data.right, data.scores) == (["q1", "q2"], ["d1", "d2"], [0.0, 1.0])
    root = load_data(write_csv("q1,d1,0.0\nq2,d2,1\n"))[0]
    assert [c.text for c in root.chunks] == ["q1", "d1"] and root.tags == {SCORE_TAG: 0.0}


def test_scored_tuples_keep_the_score() -> None:
    data = read_shape([("a", "b", 0.0), ("c", "d", 0.7)])
    assert isinstance(data, ScoredPairData) and data.scores == [0.0, 0.7]


def test_an_anchor_positive_negative_header_gives_triplets(write_csv: Callable[..., Path]) -> None:
    for options in (None, CSVOptions(is_labeled=False)):
        data = read_shape(write_csv(TRIPLETS), options)
        assert isinstance(data, TripletData) and data.num_negatives == 1
        assert data.queries == ["how tall is it", "what colour"]
        assert data.positives == ["it is 3 m tall", "it is blue"]
        assert data.negatives == [("it is blue",), ("it is 3 m tall",)]
    (root, _) = load_data(write_csv(TRIPLETS))
    assert [c.text for c in root.chunks] == ["how tall is it", "it is 3 m tall", "it is blue"]
    assert LABEL_TAG not in root.tags and "negative" not in root.tags  # never a label, never left in tags


def test_is_labeled_true_on_a_triplet_header_is_refused(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"is_labeled=True\) reads item,label rows, but no column is a label"):
        read_table(write_csv(TRIPLETS), CSVOptions(is_labeled=True))


def test_two_negatives(write_csv: Callable[..., Path]) -> None:
    path = write_csv("anchor,positive,negative_1,negative_2\nq,p,n1,n2\nr,s,n3,n4\n")
    data = read_shape(path)
    assert isinstance(data, TripletData) and data.num_negatives == 2
    assert data.negatives == [("n1", "n2"), ("n3", "n4")]
    assert read_table(path).describe() == "triplets (query, positive, 2 negatives per row)"
    hard = read_shape(write_csv("query,pos,hard_negative,neg_2\nq,p,n1,n2\n", name="hard.csv"))
    assert isinstance(hard, TripletData) and hard.negatives == [("n1", "n2")]


def test_sentence_transformers_names(write_csv: Callable[..., Path]) -> None:
    scored = read_shape(write_csv("sentence1,sentence2,score\na cat sits,a cat is sitting,0.9\na dog,a car,0.1\n"))
    assert isinstance(scored, ScoredPairData) and scored.scores == [0.9, 0.1]
    labelled = read_shape(write_csv("text,label\na,x\nb,x\n", name="l.csv"))
    assert isinstance(labelled, LabelledData) and labelled.classes == ["x"]
    for header in ("query,document", "question,answer", "anchor,positive", "sentence1,sentence2"):
        pairs = read_shape(write_csv(f"{header}\nq1,d1\nq2,d2\n", name="p.csv"))
        assert isinstance(pairs, PairData) and (pairs.left, pairs.right) == (["q1", "q2"], ["d1", "d2"])
    flipped = read_shape(write_csv("positive,anchor\nd1,q1\n", name="f.csv"))  # names, not positions, decide
    assert isinstance(flipped, PairData) and (flipped.left, flipped.right) == (["q1"], ["d1"])


def test_headerless_two_column_files_follow_the_documented_rule(write_csv: Callable[..., Path]) -> None:
    labelled = read_shape(write_csv("a red skirt,skirt\na blue skirt,skirt\na shirt,shirt\nlinen shirt,shirt\n"))
    assert isinstance(labelled, LabelledData) and labelled.classes == ["skirt", "shirt"]
    pairs = read_shape(write_csv("reset my password,open settings\ncancel my order,go to orders\n", name="p.csv"))
    assert isinstance(pairs, PairData) and pairs.right == ["open settings", "go to orders"]
    # a ported Finetuner pairs file where one document repeats: refused, naming is_labeled
    mixed = "reset password,open settings\nforgot password,open settings\ncancel order,go to orders\n"
    with pytest.raises(DataError, match=r"'go to orders'.*CSVOptions\(is_labeled=True\).*is_labeled=False"):
        read_table(write_csv(mixed, name="m.csv"))
    explicit = read_shape(write_csv(mixed, name="m.csv"), CSVOptions(is_labeled=False))
    assert isinstance(explicit, PairData) and explicit.groups == [0, 0, 1]


def test_headerless_files_without_a_rule_are_refused(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"3 columns without a header .*CSVOptions\(columns=\['anchor', 'positive'"):
        read_table(write_csv("q,p,n\nr,s,t\n"))
    named = read_shape(write_csv("q,p,n\nr,s,t\n"), CSVOptions(columns=["anchor", "positive", "negative"]))
    assert isinstance(named, TripletData) and named.negatives == [("n",), ("t",)]
    with pytest.raises(DataError, match=r"4 columns without names have no fixed meaning.*negative_2"):
        read_table(write_csv("q,p,n,m\n", name="w.csv"))
    with pytest.raises(DataError, match=r"the third column holds more than numbers.*is_labeled=True"):  # Finetuner's
        read_table(write_csv("q,p,0.5\nr,s,high\n", name="x.csv"))


def test_a_label_beside_two_texts_is_refused_with_the_rename(write_csv: Callable[..., Path]) -> None:
    path = write_csv("sentence1,sentence2,label\na,b,0.5\nc,d,1\n")
    with pytest.raises(DataError, match=r"score of the pair or a class.*CSVOptions\(columns=\{'label': 'score'\}\)"):
        read_table(path)
    data = read_shape(path, CSVOptions(columns={"label": "score"}))
    assert isinstance(data, ScoredPairData) and data.scores == [0.5, 1.0]


def test_a_column_that_looks_like_a_role_is_never_silently_left_out(write_csv: Callable[..., Path]) -> None:
    path = write_csv("query,document,hard_neg_passage\nq,d,n\nr,e,m\n")
    with pytest.raises(DataError, match=r"column 'hard_neg_passage' looks like a negative column.*'negative_1'"):
        read_table(path)
    assert isinstance(read_shape(path, CSVOptions(columns={"hard_neg_passage": "negative"})), TripletData)
    pairs = read_shape(path, CSVOptions(columns=("query", "document")))  # chosen columns: the rest is kept in tags
    assert isinstance(pairs, PairData)
    assert load_data(path, CSVOptions(columns=("query", "document")))[0].tags == {"hard_neg_passage": "n"}
    with pytest.raises(DataError, match="'rating' looks like a score column"):
        read_table(write_csv("query,document,rating\nq,d,5\n", name="r.csv"))
    rows = "text,image_id,source\na,1,x\nb,2,y\nc,3,x\nd,4,y\n"  # a header the sniffer finds (the ids are numbers)
    tagged = load_data(write_csv(rows, name="t.csv"), CSVOptions(is_labeled=True))
    assert tagged[0].tags == {LABEL_TAG: "x", "image_id": "1"}  # is_labeled=True: two columns besides the id


def test_tuples_by_length() -> None:
    triplets = read_shape([("q", "p", "n1", "n2"), ("r", "s", "n3", "n4")])
    assert isinstance(triplets, TripletData) and triplets.num_negatives == 2
    labelled = read_shape([("a", "x"), ("b", "x")])
    assert isinstance(labelled, LabelledData)
    pairs = read_shape([("a", "x"), ("b", "y")], CSVOptions(is_labeled=False))
    assert isinstance(pairs, PairData)
    with pytest.raises(DataError, match="item 1: a tuple of 3 elements, but item 0 has 4"):
        read_table([("q", "p", "n1", "n2"), ("r", "s", "n3")])


def test_dicts_dataframes_and_datasets_use_the_names() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"anchor": ["q", "r"], "positive": ["p", "s"], "negative_1": ["n1", "n3"], "negative_2": ["n2", "n4"]}
    )
    data = read_shape(frame)
    assert isinstance(data, TripletData) and data.negatives == [("n1", "n2"), ("n3", "n4")]
    rows = [{"sentence1": "a", "sentence2": "b", "score": 0.0}, {"sentence1": "c", "sentence2": "d", "score": 1.0}]
    assert read_shape(rows).scores == [0.0, 1.0]  # type: ignore[union-attr]
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_dict({"sentence1": ["a", "c"], "sentence2": ["b", "d"], "score": [0.0, 0.8]})
    scored = read_shape(hf)
    assert isinstance(scored, ScoredPairData) and scored.scores == [0.0, pytest.approx(0.8)]
    nli = datasets.Dataset.from_dict({"anchor": ["q"], "positive": ["p"], "negative": ["n"]})
    assert isinstance(read_shape(nli), TripletData)
    glue = datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1], "idx": [0, 1, 2]})
    assert read_shape(glue).classes == [1, 0]  # type: ignore[union-attr]


# ---- Document forms ----------------------------------------------------------------------------------------------
def test_triplet_and_scored_documents() -> None:
    triplet = Document(chunks=[Document(text="q"), Document(text="p"), Document(text="n1"), Document(text="n2")])
    data = read_shape(DocumentArray([triplet]))
    assert isinstance(data, TripletData) and data.negatives == [("n1", "n2")]
    roles = Document(
        chunks=[
            Document(text="n", tags={ROLE_TAG: "negative"}),
            Document(text="p", tags={ROLE_TAG: "positive"}),
            Document(text="q", tags={ROLE_TAG: "query"}),
        ]
    )
    data = read_shape([roles])
    assert isinstance(data, TripletData) and (data.queries, data.positives, data.negatives) == (["q"], ["p"], [("n",)])
    scored = [Document(chunks=[Document(text="a"), Document(text="b")], tags={SCORE_TAG: 0.0})]
    assert read_shape(scored).scores == [0.0]  # type: ignore[union-attr]


def test_document_forms_must_agree() -> None:
    with pytest.raises(DataError, match=r"item 1 \(id 'r1'\): 2 chunk\(s\), but the other roots are triplets of 3"):
        read_table(
            [
                Document(chunks=[Document(text="q"), Document(text="p"), Document(text="n")]),
                Document(chunks=[Document(text="a"), Document(text="b")], id="r1"),
                Document(chunks=[Document(text="c"), Document(text="d"), Document(text="e")]),
            ]
        )
    with pytest.raises(DataError, match=r"item 1 \(id 'u'\): no tags\['finetuner_score'\], but other pairs have one"):
        read_table(
            [
                Document(chunks=[Document(text="q"), Document(text="d")], tags={SCORE_TAG: 1.0}),
                Document(chunks=[Document(text="a"), Document(text="b")], id="u"),
            ]
        )
    with pytest.raises(DataError, match=r"chunk 1: tags\['finetuner_role'\] is 'hard'"):
        chunks = [Document(text="q", tags={ROLE_TAG: "query"}), Document(text="p", tags={ROLE_TAG: "hard"})]
        read_table([Document(chunks=chunks)])


# ---- bad rows, named ---------------------------------------------------------------------------------------------
def test_a_negative_equal_to_its_positive_or_query_is_refused_naming_the_row(write_csv: Callable[..., Path]) -> None:
    path = write_csv("anchor,positive,negative\nq,p,n\nr,s,s\nt,u,t\n")
    with pytest.raises(DataError) as info:
        read_shape(path)
    problems = info.value.problems
    assert any("line 3, column 'negative': the negative is the same as the row's positive ('s')" in p for p in problems)
    assert any("line 4, column 'negative': the negative is the same as the row's query ('t')" in p for p in problems)
    with pytest.raises(DataError, match=r"line 3, column 'negative': the negative 'p' is a positive of the same query"):
        read_shape(write_csv("anchor,positive,negative\nq,p,n\nq,x,p\n", name="c.csv"))
    with pytest.raises(DataError, match="item 0: the query and the positive are the same item"):
        read_shape([("same", "same"), ("a", "b")], CSVOptions(is_labeled=False))


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="renames columns"):
        CSVOptions(columns={"label": 3})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="names 'nope', which is not a column"):
        read_table([{"text": "a", "label": "x"}], CSVOptions(columns={"nope": "text"}))
