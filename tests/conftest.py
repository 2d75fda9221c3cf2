"""Shared fixtures: a runs directory per test session and tiny random models built here (never downloaded)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

CLASS_WORDS = {
    "fruit": ["apple", "banana", "cherry", "grape", "mango", "peach"],
    "vehicle": ["car", "bus", "train", "truck", "bike", "boat"],
    "tool": ["hammer", "saw", "drill", "wrench", "chisel", "pliers"],
    "animal": ["cat", "dog", "horse", "cow", "sheep", "goat"],
}
NOISE_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "with",
    "very",
    "some",
    "big",
    "small",
    "red",
    "blue",
    "old",
    "new",
    "nice",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-extras",
        action="store_true",
        help="fail (instead of skip) tests marked extras whose packages (open_clip, timm, ...) are missing",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under ``--require-extras`` a skipped ``extras`` test is a failure: .ci/extras must run every one."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("extras") is not None
        and item.config.getoption("--require-extras")
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped under --require-extras: {report.longrepr}"


@pytest.fixture(autouse=True)
def _runs_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINETUNER_HOME", str(tmp_path_factory.getbasetemp() / "finetuner-home"))


def make_texts(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    """Separable synthetic text: each text has 2 words of its class among 5 shared noise words."""
    rng = random.Random(seed)
    out = []
    for label, words in CLASS_WORDS.items():
        for _ in range(n_per_class):
            tokens = rng.sample(words, 2) + rng.sample(NOISE_WORDS, 5)
            rng.shuffle(tokens)
            out.append((" ".join(tokens), label))
    return out


def build_tiny_bert(directory: Path, hidden: int = 32, seed: int = 0, dropout: float = 0.1) -> Path:
    """A randomly initialised 2-layer BERT with a word-level vocabulary, saved as a Hugging Face folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *NOISE_WORDS]
    for words in CLASS_WORDS.values():
        vocab += words
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(str(directory))  # reads vocab.txt (transformers 4 and 5)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random BERT folder (loads with AutoModel / finetuner.build_model)."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


#: a tiny open_clip architecture (random init, nothing downloaded): 16-d joint space, 2 layers per tower
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register_open_clip_config(folder: Path, name: str, config: dict) -> str:
    """Register an open_clip architecture from a config dict (as open_clip's own JSON files); its name."""
    import json

    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    open_clip.add_model_config(path)
    return name


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The name of a tiny registered open_clip architecture (skips the test when open_clip is missing)."""
    pytest.importorskip("open_clip")
    return register_open_clip_config(tmp_path_factory.mktemp("open-clip-configs"), "finetuner-tiny", TINY_OPEN_CLIP)


def tiny_hf_clip(tiny_bert: str, folder: Path) -> Path:
    """A tiny random Hugging Face CLIP (16-d towers, 32 px images, 40 text positions) with the tiny BERT's
    tokenizer, saved to ``folder``."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**small, "vocab_size": tokenizer.vocab_size, "max_position_embeddings": 40,
                     "eos_token_id": tokenizer.sep_token_id, "bos_token_id": tokenizer.cls_token_id, "pad_token_id": 0},
        vision_config={**small, "image_size": 32, "patch_size": 16},
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
