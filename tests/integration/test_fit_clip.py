"""CLIP end to end on a tiny random Hugging Face CLIP model: pairs in, two towers out."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import finetuner
from finetuner import Document, DocumentArray
from finetuner.errors import ArtifactError, ConfigError, DataError
from finetuner.losses.contrastive import CLIPLoss

pytestmark = pytest.mark.integration

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20),
           "purple": (150, 30, 160), "orange": (240, 140, 20)}
SHAPES = ("square", "circle", "bar")


def draw(colour: str, shape: str, rng: random.Random) -> Image.Image:
    img = Image.new("RGB", (32, 32), (255, 255, 255))
    d = ImageDraw.Draw(img)
    x, y = rng.randint(2, 8), rng.randint(2, 8)
    fill = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    if shape == "square":
        d.rectangle([x, y, x + 20, y + 20], fill=fill)
    elif shape == "circle":
        d.ellipse([x, y, x + 20, y + 20], fill=fill)
    else:
        d.rectangle([x, 0, x + 8, 31], fill=fill)
    return img


def make_pairs(folder: Path, copies: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(copies):
        for colour in COLOURS:
            for shape in SHAPES:
                path = folder / f"{colour}-{shape}-{k}.png"
                draw(colour, shape, rng).save(path)
                out.append((f"a {colour} {shape}", str(path)))
    return out


def build_tiny_clip(directory: Path) -> Path:
    from transformers import BertTokenizerFast, CLIPConfig, CLIPImageProcessor, CLIPModel

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", *COLOURS, *SHAPES]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(directory))
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": 3,
                     "bos_token_id": 2, "pad_token_id": 0},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def clip_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    model_dir = build_tiny_clip(root / "model")
    return str(model_dir), make_pairs(root / "train", 3, seed=1), make_pairs(root / "eval", 1, seed=2)


def test_clip_fit_improves_text_to_image_and_saves_two_towers(clip_setup, tmp_path):
    model_dir, train, evals = clip_setup
    run = finetuner.fit(model_dir, train, evals, epochs=6, batch_size=18, learning_rate=3e-3, seed=0,
                        verbose=False)
    m = run.metrics()
    assert m["after"]["reciprocal_rank"] > m["before"]["reciprocal_rank"] + 0.1
    assert "image_to_text/reciprocal_rank" in m["after"]
    assert m["after"]["image_to_text/reciprocal_rank"] > m["before"]["image_to_text/reciprocal_rank"]

    path = Path(run.save_artifact(tmp_path))
    assert (path / "models" / "clip-text" / "model.safetensors").is_file()
    assert (path / "models" / "clip-vision" / "model.safetensors").is_file()
    with pytest.raises(ArtifactError, match="select_model"):
        finetuner.get_model(path)
    text_model = finetuner.get_model(path, select_model="clip-text")
    vision_model = finetuner.get_model(path, select_model="clip-vision")
    texts = [t for t, _ in evals]
    images = [i for _, i in evals]
    t = finetuner.encode(text_model, texts)
    v = finetuner.encode(vision_model, images)
    assert t.shape == v.shape == (len(evals), 16)
    # both towers embed into one space: the caption's own image ranks high among all images
    sims = (t / np.linalg.norm(t, axis=1, keepdims=True)) @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T
    ranks = (sims > sims.diagonal()[:, None]).sum(1)
    assert np.mean(1.0 / (1 + ranks)) == pytest.approx(m["after"]["reciprocal_rank"], abs=1e-4)
    # images as Documents (blob) encode like paths
    docs = DocumentArray([Document(blob=Path(p).read_bytes()) for p in images[:3]])
    np.testing.assert_allclose(finetuner.encode(vision_model, docs).embeddings, v[:3], atol=1e-5)


def test_clip_root_documents_and_csv_train(clip_setup, tmp_path):
    model_dir, train, _ = clip_setup
    roots = DocumentArray(
        Document(chunks=[Document(content=t, modality="text"), Document(uri=i, modality="image")]) for t, i in train
    )
    run = finetuner.fit(model_dir, roots, epochs=1, batch_size=8, verbose=False)
    assert run.status()["status"] == "FINISHED"
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("image,text\n" + "".join(f"{i},{t}\n" for t, i in train[:10]))  # image column first
    run = finetuner.fit(model_dir, str(csv_file), epochs=1, batch_size=4, verbose=False)
    assert run.status()["status"] == "FINISHED"


def test_clip_errors_are_clear(clip_setup, tiny_bert):
    model_dir, train, _ = clip_setup
    with pytest.raises(ConfigError, match="two-tower"):
        finetuner.fit(tiny_bert, train, epochs=1, verbose=False)
    with pytest.raises(ConfigError, match="CLIPLoss"):
        finetuner.fit(model_dir, train, epochs=1, loss="ArcFaceLoss", verbose=False)
    bad = DocumentArray([Document(chunks=[Document(content="a red bar", modality="text")])])
    with pytest.raises(DataError, match="2 chunks"):
        finetuner.fit(model_dir, bad, epochs=1, verbose=False)


def test_tower_locking_and_per_tower_learning_rates(clip_setup):
    from finetuner.config import TrainingConfig
    from finetuner.models import build_model
    from finetuner.training.loop import build_optimizer

    model_dir, _, _ = clip_setup
    model = build_model(model_dir, freeze={"vision": True, "text": 1},
                        model_options={"learning_rates": {"text": 1e-4, "vision": 1e-6}})
    assert not any(p.requires_grad for p in model.vision.parameters())  # a tower without a head: locked whole
    text_trainable = {n.split(".")[4] for n, p in model.text.named_parameters()
                      if p.requires_grad and ".layers." in n}
    assert text_trainable == {"1"}  # only the last of the 2 text layers
    assert not model.text.backbone.text_model.embeddings.token_embedding.weight.requires_grad
    optimizer = build_optimizer(TrainingConfig(learning_rate=1e-3), model, CLIPLoss())
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-3]  # text tower, then the loss's temperature
    unlocked = build_model(model_dir, model_options={"learning_rates": {"text": 1e-4, "vision": 1e-6}})
    lrs = [g["lr"] for g in build_optimizer(TrainingConfig(), unlocked, CLIPLoss()).param_groups]
    assert lrs == [1e-4, 1e-6, 1e-5]
    with pytest.raises(ConfigError, match="'text' and 'vision'"):
        build_model(model_dir, freeze={"image": True})


def test_auto_batch_size_for_two_towers(clip_setup, monkeypatch):
    """batch_size='auto' probes the two towers' real step (both forwards, CLIPLoss, backward): text and image
    batches larger than 16 rows fail as out-of-memory would, so the run trains with 16 pairs."""
    from finetuner.models import factory

    build = factory.build_model

    def build_with_limit(*args, **kwargs):
        model = build(*args, **kwargs)

        def hook(module, args, kwargs):
            rows = next(iter(kwargs.values()))
            if rows.shape[0] > 16:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.text.register_forward_pre_hook(hook, with_kwargs=True)
        model.vision.register_forward_pre_hook(hook, with_kwargs=True)
        return model

    monkeypatch.setattr("finetuner.training.build.build_model", build_with_limit)
    model_dir, train, _ = clip_setup
    run = finetuner.fit(model_dir, train, batch_size="auto", epochs=1, device="cpu", verbose=False)
    assert run.status()["status"] == "FINISHED"
    assert run.config["batch_size"] == 16  # 54 pairs: tries 32 (fails), then 16 (fits)


def test_hf_clip_starts_from_its_trained_temperature(tmp_path):
    """CLIPLoss starts from the checkpoint's own logit_scale (read from its safetensors, one tensor), not CLIP's
    initial 0.07: a pretrained CLIP's trained scale is ~100."""
    import math

    from transformers import CLIPModel

    from finetuner.models import build_model
    from finetuner.training.build import clip_loss_options

    folder = build_tiny_clip(tmp_path / "clip")
    model = CLIPModel.from_pretrained(str(folder))
    model.logit_scale.data.fill_(math.log(50.0))
    model.save_pretrained(folder)
    built = build_model(str(folder))
    assert built.temperature == pytest.approx(1 / 50, rel=1e-5)
    assert clip_loss_options(built, None) == {"temperature": pytest.approx(1 / 50, rel=1e-5)}
    assert clip_loss_options(built, {"temperature": 0.2}) == {"temperature": 0.2}  # the user's choice wins
