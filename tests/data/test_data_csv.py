"""Reading CSV files: labelled rows, pairs, CLIP pairs, headers, dialects, encodings, sampling."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from finetuner.data import LABEL_TAG, SCORE_TAG, CSVOptions, load_data
from finetuner.errors import DataError


def test_fortunes_multi_line_quoted_fields(fixtures: Path) -> None:
    path = fixtures / "fortunes_sample.csv"
    da = load_data(path)
    with path.open(newline="", encoding="utf-8") as f:
        expected = list(csv.DictReader(f))
    assert da.texts == [row["text"] for row in expected]
    assert [d.label for d in da] == [row["label"] for row in expected]
    assert sum("\n" in t for t in da.texts) >= 4
    assert da[1].text.startswith('A "critic" is a man')  # doubled quotes come back single
    assert "\t\t-- Robert Heinlein" in da[1].text  # tabs kept
    assert load_data(str(path)).texts == da.texts


def test_fashion_mnist_image_paths_resolve_against_the_csv_folder(
    fixtures: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # not the CSV's folder
    da = load_data(fixtures / "fashion_mnist" / "train.csv")
    assert [d.label for d in da] == ["Dress", "Dress", "Ankle boot", "Ankle boot"]
    for doc in da:
        assert doc.text is None and doc.blob is None and doc.mime_type == "image/png"
        assert Path(doc.uri).is_absolute() and Path(doc.uri).is_file()
    assert da[0].uri == str(fixtures / "fashion_mnist" / "train" / "20.png")


def test_convert_to_blob(fixtures: Path) -> None:
    da = load_data(fixtures / "fashion_mnist" / "train.csv", CSVOptions(convert_to_blob=True))
    assert da[0].blob == (fixtures / "fashion_mnist" / "train" / "20.png").read_bytes()
    assert da[0].blob.startswith(b"\x89PNG") and da[0].uri


def _assert_clip_pairs(da: object, n: int) -> None:
    assert len(da) == n  # type: ignore[arg-type]
    for root in da:  # type: ignore[attr-defined]
        assert LABEL_TAG not in root.tags and root.content is None
        text, image = root.chunks
        assert (text.modality, image.modality) == ("text", "image")
        assert text.text and text.uri is None
        assert image.text is None and Path(image.uri).is_file()


def test_emoji_pairs_without_options_are_clip_pairs(fixtures: Path) -> None:
    da = load_data(fixtures / "emoji_noto" / "pairs.csv")
    _assert_clip_pairs(da, 4)
    assert da[0].chunks[0].text == "grinning face"
    assert da[0].chunks[1].uri.endswith("img/1f600.png")
    assert da[0].tags == {"category": "Smileys & Emotion", "subcategory": "face-smiling"}  # extra columns


def test_emoji_pairs_with_is_labeled_false(fixtures: Path) -> None:
    _assert_clip_pairs(load_data(fixtures / "emoji_noto" / "pairs.csv", CSVOptions(is_labeled=False)), 4)


def test_emoji_category_as_label(fixtures: Path) -> None:
    options = CSVOptions(is_labeled=True, columns=("image", "category"))
    da = load_data(fixtures / "emoji_noto" / "pairs.csv", options)
    assert [d.label for d in da] == ["Smileys & Emotion"] * 3 + ["Animals & Nature"]
    assert da[3].uri.endswith("1f435.png") and da[3].tags["text"] == "monkey face"
    texts = load_data(fixtures / "emoji_noto" / "pairs.csv", CSVOptions(is_labeled=True, columns=("text", 2)))
    assert texts[0].text == "grinning face" and texts[0].label == "Smileys & Emotion"
    # without is_labeled the two chosen columns are read by their values: 'Animals & Nature' occurs once, the
    # other category three times, so item,label and (query, document) are both possible: refused, naming the option
    with pytest.raises(DataError, match=r"'Animals & Nature'.*CSVOptions\(is_labeled=True\)"):
        load_data(fixtures / "emoji_noto" / "pairs.csv", CSVOptions(columns=("text", 2)))


@pytest.mark.parametrize("header", ["image,text\n", "image,caption\n", ""])
def test_clip_pairs_with_the_image_column_first(
    header: str, write_csv: Callable[..., Path], png: Callable[[str], Path]
) -> None:
    png("img/a.png")
    path = write_csv(header + "img/a.png,a grey dress\nimg/a.png,another dress\n")
    da = load_data(path, CSVOptions(is_labeled=False))
    _assert_clip_pairs(da, 2)
    assert [d.chunks[0].text for d in da] == ["a grey dress", "another dress"]


def test_image_column_detected_per_row(write_csv: Callable[..., Path], png: Callable[[str], Path]) -> None:
    png("a.png")
    path = write_csv("a.png,a dress\na dress,a.png\nhttps://example.org/x.jpg,a shoe\n")
    da = load_data(path, CSVOptions(is_labeled=False, header=False))
    assert [d.chunks[0].text for d in da] == ["a dress", "a dress", "a shoe"]
    assert [d.chunks[1].modality for d in da] == ["image"] * 3


def test_query_document_pairs(write_csv: Callable[..., Path]) -> None:
    da = load_data(write_csv("query,document\nfecundity,fruitfulness\nfetus,foetus\n"))
    assert [[c.text for c in d.chunks] for d in da] == [["fecundity", "fruitfulness"], ["fetus", "foetus"]]
    assert all(c.modality == "text" for d in da for c in d.chunks)


def test_scored_pairs_and_headerless_extra_columns(write_csv: Callable[..., Path]) -> None:
    da = load_data(write_csv("query,document,score\na,b,0.25\n"))
    assert da[0].tags == {SCORE_TAG: 0.25}
    # three columns without a header and text in the third: not (a, b, score); refused, naming the settling options
    path = write_csv("pencil skirt,skirt,shop a\nstriped shirt,shirt,shop b\n")
    refused = r"3 columns without a header .*CSVOptions\(columns=\['anchor'.*is_labeled=True"
    with pytest.raises(DataError, match=refused):
        load_data(path)
    da = load_data(path, CSVOptions(is_labeled=True))  # explicit: item,label and the third column in tags
    assert da[0].tags == {"column_3": "shop a", LABEL_TAG: "skirt"}


def test_headerless_two_columns_read_by_their_values(write_csv: Callable[..., Path]) -> None:
    labelled = "pencil skirt slim fit,skirt\na-line skirt,skirt\nstriped over-sized shirt,shirt\nlinen shirt,shirt\n"
    da = load_data(write_csv(labelled))
    assert da.texts == ["pencil skirt slim fit", "a-line skirt", "striped over-sized shirt", "linen shirt"]
    assert [d.label for d in da] == ["skirt", "skirt", "shirt", "shirt"]
    rows = "fecundity,fruitfulness\nfetus,foetus\nmillisecond,msec\nstage left,left stage\n"
    pairs = load_data(write_csv(rows))  # no value of the second column repeats: pairs (Finetuner's default reading)
    assert [[c.text for c in d.chunks] for d in pairs][:2] == [["fecundity", "fruitfulness"], ["fetus", "foetus"]]
    assert len(pairs) == 4 and all(LABEL_TAG not in d.tags for d in pairs)


def test_header_sniffed_without_known_names(write_csv: Callable[..., Path]) -> None:
    rows = "".join(f"review number {i} was {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(20))
    da = load_data(write_csv("sentence_text,sentiment\n" + rows))
    assert len(da) == 20 and da[0].text == "review number 0 was bad" and da[0].label == "0"


def test_header_option_overrides_sniffing(write_csv: Callable[..., Path]) -> None:
    path = write_csv("text,label\na,x\n")
    assert load_data(path, CSVOptions(header=False, is_labeled=True)).texts == ["text", "a"]
    path = write_csv("my item,my label\na,x\n")
    assert load_data(path, CSVOptions(header=True, is_labeled=True)).texts == ["a"]


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_delimiters_are_sniffed(delimiter: str, write_csv: Callable[..., Path]) -> None:
    d = delimiter
    text = f'text{d}label\npencil skirt, slim fit{d}skirt\n"has {d} inside"{d}shirt\nplain{d}shirt\n'
    if d == ",":
        text = 'text,label\n"pencil skirt, slim fit",skirt\n"has , inside",shirt\nplain,shirt\n'
    da = load_data(write_csv(text))
    assert da.texts == ["pencil skirt, slim fit", f"has {d} inside", "plain"]
    assert [x.label for x in da] == ["skirt", "shirt", "shirt"]


def test_explicit_dialect(write_csv: Callable[..., Path]) -> None:
    path = write_csv("text\tlabel\na,b\tx\n")
    assert load_data(path, CSVOptions(dialect="excel-tab")).texts == ["a,b"]

    class Semicolon(csv.excel):
        delimiter = ";"

    assert load_data(write_csv("text;label\na;x\n"), CSVOptions(dialect=Semicolon)).texts == ["a"]


def test_latin_1_encoding(write_csv: Callable[..., Path]) -> None:
    path = write_csv("text,label\ncafé crème,boisson\nnaïve,adj\n", encoding="latin-1")
    assert load_data(path, CSVOptions(encoding="latin-1")).texts == ["café crème", "naïve"]


def test_utf8_byte_order_mark_and_crlf(write_csv: Callable[..., Path]) -> None:
    path = write_csv('\ufefftext,label\r\n"two\r\nlines",a\r\nb,c\r\n')
    da = load_data(path)
    assert da.texts == ["two\r\nlines", "b"] and da[0].label == "a"


def test_blank_lines_are_skipped(write_csv: Callable[..., Path]) -> None:
    assert load_data(write_csv("text,label\n\na,x\n\n\nb,y\n\n")).texts == ["a", "b"]


def test_size_and_sampling_rate(write_csv: Callable[..., Path]) -> None:
    path = write_csv("text,label\n" + "".join(f"text {i},{i % 4}\n" for i in range(300)))
    assert load_data(path, CSVOptions(size=10)).texts == [f"text {i}" for i in range(10)]
    sampled = load_data(path, CSVOptions(sampling_rate=0.2)).texts
    assert sampled == load_data(path, CSVOptions(sampling_rate=0.2)).texts  # reproducible
    assert 30 < len(sampled) < 90 and sampled != sampled[:0]
    assert load_data(path, CSVOptions(sampling_rate=0.2, seed=1)).texts != sampled
    both = load_data(path, CSVOptions(sampling_rate=0.5, size=5)).texts
    assert len(both) == 5 and both == load_data(path, CSVOptions(sampling_rate=0.5)).texts[:5]


def test_size_stops_reading_before_a_later_bad_row(write_csv: Callable[..., Path]) -> None:
    path = write_csv("text,label\na,x\nb,y\nc,y,extra\n")
    assert load_data(path, CSVOptions(size=2)).texts == ["a", "b"]


def test_a_single_row_is_data_unless_it_names_known_columns(write_csv: Callable[..., Path]) -> None:
    assert load_data(write_csv("pencil skirt,skirt\n"), CSVOptions(is_labeled=True)).texts == ["pencil skirt"]
    (pair,) = load_data(write_csv("x,y\n"))  # one row: its second value does not repeat, so a pair
    assert [c.text for c in pair.chunks] == ["x", "y"]
