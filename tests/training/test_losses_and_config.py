import pytest
import torch

from finetuner.config import TrainingConfig
from finetuner.errors import ConfigError
from finetuner.losses import get_loss, get_miner, list_losses, list_miners, needs_class_count


def test_loss_by_name_with_options_and_closest_match():
    loss = get_loss("TripletMarginLoss", {"margin": 0.3})
    assert loss.margin == 0.3
    with pytest.raises(ConfigError, match="resolve_loss"):  # 'auto' is resolved once, by the data, before this
        get_loss("auto")
    with pytest.raises(ConfigError, match="did you mean 'TripletMarginLoss'"):
        get_loss("TripletMarginLos")
    with pytest.raises(ConfigError, match="cannot be built with options"):
        get_loss("TripletMarginLoss", {"marginn": 1})


def test_class_weight_losses_get_sizes_filled_in():
    loss = get_loss("ArcFaceLoss", embedding_size=8, num_classes=3)
    assert tuple(loss.W.shape) == (8, 3)
    assert needs_class_count("ArcFaceLoss") and not needs_class_count("TripletMarginLoss")


def test_triplet_loss_value_matches_hand_computation():
    # two classes on a line; with margin 0.1 and L2-normalised embeddings the only triplets are
    # (a0, a1, n) with d(a,p)=0 (identical points) and d(a,n)=sqrt(2) -> loss 0 for every triplet
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert float(get_loss("TripletMarginLoss", {"margin": 0.1})(emb, labels)) == 0.0
    # positives orthogonal: for each anchor d(a,p)=sqrt(2); one negative sits on the anchor (d=0, cost
    # sqrt(2)+0.1), the other on the positive (d=sqrt(2), cost 0.1); all 8 triplets are non-zero -> mean
    emb2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    value = float(get_loss("TripletMarginLoss", {"margin": 0.1})(emb2, labels))
    assert value == pytest.approx(((2**0.5 + 0.1) + 0.1) / 2, abs=1e-5)


def test_miner_by_name_and_listings():
    assert type(get_miner("MultiSimilarityMiner")).__name__ == "MultiSimilarityMiner"
    assert get_miner(None) is None
    with pytest.raises(ConfigError, match="without a miner"):
        get_miner(None, {"margin": 1})
    assert "NTXentLoss" in list_losses() and "TripletMarginMiner" in list_miners()


def test_config_reports_every_problem_at_once():
    cfg = TrainingConfig(
        epochs=0, learning_rate=5.0, batch_size=1, optimizer="Adamm", val_split=1.5, device="gpu"
    )
    problems = cfg.problems()
    assert len(problems) == 6
    assert any("did you mean 'Adam'" in p for p in problems)
    with pytest.raises(ConfigError, match="6 invalid setting"):
        cfg.validate()
    assert TrainingConfig().problems() == []


def test_num_workers_auto_is_none_on_the_cpu_and_up_to_8_beside_a_gpu(monkeypatch):
    import os

    from finetuner.config import TrainingConfig

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert TrainingConfig().workers("cpu") == 0
    assert TrainingConfig().workers("cuda") == 8
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert TrainingConfig().workers("cuda") == 3  # one core stays with the training process
    assert TrainingConfig(num_workers=2).workers("cuda") == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 training processes on this machine: 16 // 4 - 1 each
    assert TrainingConfig().workers("cuda") == 3
    assert any("num_workers must be an int >= 0 or 'auto'" in m for m in TrainingConfig(num_workers=-1).problems())
