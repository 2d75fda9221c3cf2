"""The text demo (README's first command) ends with the before/after table: fit prints nothing itself, so the demo
must show it. Run here with a tiny random BERT in place of all-MiniLM-L6-v2, on the bundled WordNet slice."""

from __future__ import annotations

import pytest

from finetuner.demos import text


def test_text_demo_prints_the_before_after_table(tiny_bert, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(text, "MODEL", tiny_bert)
    text.run(epochs=1, output=tmp_path / "artifacts", batch_size=16, verbose=False)
    out = capsys.readouterr().out
    assert "before" in out and "after" in out and "reciprocal_rank" in out  # the metrics table
    assert f"saved to {tmp_path / 'artifacts'}" in out
