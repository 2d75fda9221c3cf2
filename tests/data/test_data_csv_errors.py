"""Bad CSV files and options raise errors that name the file, the line and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from finetuner.data import CSVOptions, load_data
from finetuner.errors import ConfigError, DataError

# line 1: header; lines 2-4: one record with line breaks; line 5: a record; line 6: the bad record
MULTI_LINE = 'text,label\n"first line\nsecond line\nthird line",a\nplain,b\n'


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train_data 'nope\.csv': no such file: .*nope\.csv"):
        load_data(str(tmp_path / "nope.csv"), name="train_data")
    with pytest.raises(DataError, match="no such file"):
        load_data("a pencil skirt")  # a str is a path


def test_directory_and_other_formats(tmp_path: Path, write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match="is a directory"):
        load_data(tmp_path)
    with pytest.raises(DataError, match=r"only CSV files.*\.json file.*DataFrame"):
        load_data(write_csv("[]", name="data.json"))


@pytest.mark.parametrize("content", ["", "\n\n", "   \n"])
def test_empty_file(content: str, write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"'data\.csv': the file is empty"):
        load_data(write_csv(content))


def test_header_without_rows(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"has a header \(text, label\) but no data rows"):
        load_data(write_csv("text,label\n"))


def test_too_many_fields_names_the_line(write_csv: Callable[..., Path]) -> None:
    path = write_csv(MULTI_LINE + "pencil skirt, slim fit,skirt\n")
    with pytest.raises(
        DataError, match=r"'data\.csv' line 6: 3 fields .* expected 2 like the header on line 1"
    ):
        load_data(path)
    with pytest.raises(DataError, match="must be quoted"):
        load_data(path)


def test_too_few_fields_names_the_line(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"line 6: 1 field \('lonely'\), expected 2"):
        load_data(write_csv(MULTI_LINE + "lonely\n"))
    with pytest.raises(DataError, match="expected 2 like line 1"):  # no header: the first row sets the width
        load_data(write_csv("a,x\nb,y\nc\n"))


def test_unclosed_quote_names_its_line(write_csv: Callable[..., Path]) -> None:
    path = write_csv('text,label\na,x\n"never closed,y\nb,z\nc,z\n')
    with pytest.raises(DataError, match=r"line 3: 1 field .*a quote that is never closed"):
        load_data(path)


def test_single_column_file(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"found 1 column \(text\); need two"):
        load_data(write_csv("text\na\nb\n"))


def test_empty_fields_name_line_and_column(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"line 6, column 'text': empty field"):
        load_data(write_csv(MULTI_LINE + ",c\n"))
    with pytest.raises(DataError, match=r"line 6, column 'label': empty label"):
        load_data(write_csv(MULTI_LINE + "d,  \n"))
    with pytest.raises(DataError, match=r"line 1, column 2: empty label"):
        load_data(write_csv("a,\n"), CSVOptions(header=False))


def test_undecodable_bytes_name_encoding_line_and_byte(write_csv: Callable[..., Path]) -> None:
    path = write_csv("text,label\na,x\ncaf\xe9,y\n", encoding="latin-1")
    with pytest.raises(
        DataError, match=r"cannot decode line 3 as utf-8 \(byte offset 18, column 4: b'\\xe9'"
    ):
        load_data(path)
    with pytest.raises(DataError, match=r"CSVOptions\(encoding='latin-1'\)"):
        load_data(path)


def test_unknown_encoding(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="'klingon' is not a known text encoding"):
        load_data(write_csv("a,b\n"), CSVOptions(encoding="klingon"))


def test_missing_image_names_the_line(write_csv: Callable[..., Path]) -> None:
    path = write_csv("image,label\nimg/missing.png,skirt\n")
    with pytest.raises(
        DataError, match=r"line 2, column 'image': 'img/missing\.png' looks like an image path"
    ):
        load_data(path)


def test_is_labeled_true_without_a_label_column_names_the_fix(fixtures: Path) -> None:
    fix = r"'pairs\.csv': the columns 'text', 'image', .*is_labeled=True.*columns=\('image', 'category'\)"
    with pytest.raises(DataError, match=fix):
        load_data(fixtures / "emoji_noto" / "pairs.csv", CSVOptions(is_labeled=True))
    with pytest.raises(DataError, match=r"line 2, column 'image': the label .*is_labeled=False"):
        load_data(fixtures / "emoji_noto" / "pairs.csv", CSVOptions(is_labeled=True, columns=("text", "image")))


def test_bad_score(write_csv: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match=r"line 3, column 'score': a pair's score must be a number"):
        load_data(write_csv("query,document,score\na,b,1\nc,d,high\n"))


def test_unknown_columns(write_csv: Callable[..., Path]) -> None:
    path = write_csv("text,label\na,x\n")
    with pytest.raises(
        ConfigError, match="names 'category', which is not a column; the columns are text, label"
    ):
        load_data(path, CSVOptions(columns=("text", "category")))
    with pytest.raises(ConfigError, match="index 5 is out of range"):
        load_data(path, CSVOptions(columns=(0, 5)))
    with pytest.raises(ConfigError, match="no header row and 3 columns: give one name per column"):
        load_data(write_csv("a,x,y\n", name="b.csv"), CSVOptions(columns=("text", "label"), header=False))
    with pytest.raises(ConfigError, match="must differ"):
        load_data(path, CSVOptions(columns=("text", 0)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "size must be a positive int"),
        ({"size": 2.5}, "size must be a positive int"),
        ({"sampling_rate": 0}, r"sampling_rate must be a number in \(0, 1\]"),
        ({"sampling_rate": 1.5}, r"sampling_rate must be a number in \(0, 1\]"),
        ({"header": "yes"}, "header must be True, False or 'auto'"),
        ({"is_labeled": "auto"}, "is_labeled must be True or False"),
        ({"columns": ("a",)}, "two or more column names or 0-based indices"),
        ({"columns": "ab"}, "two or more column names or 0-based indices"),
        ({"columns": ("a", 1.5)}, "two or more column names or 0-based indices"),
        ({"dialect": "excell"}, "dialect 'excell' is not a csv dialect; use 'auto' or one of excel"),
    ],
)
def test_csv_options_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CSVOptions(**kwargs)  # type: ignore[arg-type]
