"""report.html: self-contained (data URIs only), thumbnails for images, escaping, no-matplotlib fallback, CLI,
and a render in headless Chromium (not blank, no console errors, no network requests)."""

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.conftest import make_texts
from tests.report.chromium import find_chromium, render

import finetuner
from finetuner.cli import main as cli_main
from finetuner.report import html as report_html

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DRESS = str(FIXTURES / "fashion_mnist" / "train" / "20.png")
BOOT = FIXTURES / "fashion_mnist" / "train" / "89.png"


def _fake_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yml").write_text(yaml.safe_dump({"model": "resnet50", "loss": "TripletMarginLoss", "epochs": 2}))
    (folder / "metadata.yml").write_text(
        yaml.safe_dump(
            {
                "run_name": folder.name,
                "history": [
                    {"epoch": 1, "loss": 0.4, "val_loss": 0.5, "precision_at_k": 0.4},
                    {"epoch": 2, "loss": 0.2, "val_loss": 0.3, "precision_at_k": 0.7},
                ],
            }
        )
    )
    before = {"precision_at_k": 0.3, "hit_at_k": 0.5}
    (folder / "metrics.yml").write_text(
        yaml.safe_dump({"before": before, "after": {"precision_at_k": 0.7, "hit_at_k": 0.9}})
    )
    results = [
        {"item": DRESS, "label": "Dress", "score": 0.91},
        {"item": BOOT.as_uri(), "label": "Ankle boot", "score": 0.42},
        {"item": "https://example.com/remote.png", "label": "Dress", "score": 0.4},
    ]
    examples = {
        "before": [
            {"query": DRESS, "label": "Dress", "results": results[::-1]},
            {"query": "<script>alert(1)</script>", "label": "x", "results": []},
        ],
        "after": [
            {"query": DRESS, "label": "Dress", "results": results},
            {"query": "<script>alert(1)</script>", "label": "x", "results": []},
        ],
    }
    (folder / "example-results.yml").write_text(yaml.safe_dump(examples))
    return folder


def test_report_is_self_contained_with_thumbnails_and_escaped_text(tmp_path):
    page_path = report_html.write_report(_fake_run(tmp_path / "run-a"))
    page = page_path.read_text()
    assert page_path.name == "report.html"
    sources = [chunk.split('"', 1)[0] for chunk in page.split(' src="')[1:]]
    assert sources and all(s.startswith("data:image/") for s in sources)  # charts and thumbnails are inline
    assert "<script" not in page.replace("&lt;script&gt;", "")  # no scripts at all; the item text is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("data:image/jpeg") == 2 * 2 + 1  # 2 local images in each results list + the query
    assert page.count("data:image/png") == 3  # loss curves, metric curves, before/after bars
    assert "https://example.com/remote.png" in page  # remote images are named, never fetched
    assert "+0.4000" in page and "resnet50" in page  # the before/after change and the settings


def test_report_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(report_html, "plotting_available", lambda: False)
    page = report_html.build_report(_fake_run(tmp_path / "run-b"))
    assert "matplotlib is not installed" in page and "data:image/png" not in page


def test_thumbnail_of_a_data_uri_and_non_images():
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (300, 200), "red").save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    thumb = report_html.thumbnail(uri)
    assert thumb.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(thumb.split(",", 1)[1]))) as img:
        assert max(img.size) == report_html.THUMBNAIL_PX
    assert report_html.thumbnail("a text that mentions photo.png") is None
    assert report_html.thumbnail(str(FIXTURES / "missing.png")) is None


@pytest.fixture(scope="module")
def fitted_run(tiny_bert, tmp_path_factory):
    evals = make_texts(6, seed=2)
    with pytest.MonkeyPatch.context() as mp:  # the runs directory the function-scoped conftest fixture uses
        mp.setenv("FINETUNER_HOME", str(tmp_path_factory.getbasetemp() / "finetuner-home"))
        return _fit(tiny_bert, evals)


def _fit(tiny_bert, evals):
    return finetuner.fit(
        tiny_bert,
        make_texts(12, seed=1),
        evals,
        epochs=2,
        batch_size=16,
        learning_rate=3e-3,
        seed=0,
        verbose=False,
        callbacks=[finetuner.callback.EvaluationCallback(evals, limit=5)],
    )


@pytest.mark.integration
def test_fit_writes_the_report_and_cli_rebuilds_it(fitted_run, tmp_path, capsys):
    page = fitted_run.directory / "report.html"
    assert page.is_file() and "precision_at_k" in page.read_text()
    artifact = Path(fitted_run.save_artifact(tmp_path / "artifacts"))
    assert (artifact / "report.html").is_file()
    (artifact / "report.html").unlink()
    assert cli_main(["report", str(artifact), "--no-open"]) == 0
    assert capsys.readouterr().out.strip() == str(artifact / "report.html")
    assert cli_main(["report", fitted_run.name, "--no-open"]) == 0  # a run name works too
    assert (artifact / "report.html").is_file()


@pytest.mark.integration
def test_report_renders_in_headless_chromium(fitted_run, tmp_path):
    if find_chromium() is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    report_html.write_report(fitted_run.directory)
    shot = render(fitted_run.directory / "report.html", width=1280, height=900)
    assert shot.errors == []
    assert all(u.startswith(("file:", "data:")) for u in shot.requests), shot.requests  # nothing from the network
    from PIL import Image

    with Image.open(io.BytesIO(shot.png)) as img:
        assert img.width == 1280 and img.height > 1500  # the whole page, not one screen
        grey = np.asarray(img.convert("L"), dtype=np.float32)
    assert grey.std() > 20  # not a blank page
    assert (grey < 80).mean() > 0.02  # dark header and text are there


def test_the_chromium_check_catches_console_errors_and_failed_requests(tmp_path):
    if find_chromium() is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    page = tmp_path / "broken.html"
    page.write_text("<html><body><img src='missing.png'><script>console.error('boom')</script></body></html>")
    problems = " | ".join(render(page, width=400, height=300).errors)
    assert "console.error: boom" in problems and "missing.png" in problems


def test_report_shows_the_standard_metrics_in_their_own_table(tmp_path):
    folder = _fake_run(tmp_path / "run-s")
    before = {"precision_at_k": 0.3, "ndcg_at_k": 0.5, "ndcg_at_10": 0.41, "mrr_at_10": 0.35, "map_at_20": 0.3}
    after = {"precision_at_k": 0.7, "ndcg_at_k": 0.8, "ndcg_at_10": 0.62, "mrr_at_10": 0.58, "map_at_20": 0.5}
    (folder / "metrics.yml").write_text(yaml.safe_dump({"before": before, "after": after}))
    page = report_html.write_report(folder).read_text()
    finetuner_table, standard_table = page.split("Standard retrieval metrics", 1)
    assert "<td>ndcg_at_k</td>" in finetuner_table and "<td>ndcg_at_10</td>" not in finetuner_table
    for name in ("ndcg_at_10", "mrr_at_10", "map_at_20"):
        assert f"<td>{name}</td>" in standard_table
    assert "+0.2100" in standard_table  # ndcg_at_10: 0.41 -> 0.62


def test_scored_pair_runs_report_score_agreement_not_retrieval(tmp_path):
    folder = _fake_run(tmp_path / "run-c")
    before, after = {"spearman_cosine": 0.61, "pearson_cosine": 0.58}, {"spearman_cosine": 0.83, "pearson_cosine": 0.8}
    (folder / "metrics.yml").write_text(yaml.safe_dump({"before": before, "after": after}))
    page = report_html.write_report(folder).read_text()
    assert "Score agreement on the evaluation pairs" in page and "Retrieval metrics on" not in page
    assert "<td>spearman_cosine</td>" in page and "+0.2200" in page  # 0.61 -> 0.83
