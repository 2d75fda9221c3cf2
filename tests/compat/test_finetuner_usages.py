"""The usages of Finetuner 0.8's documentation (walkthrough, advanced topics, notebooks), run as they are written
there, adapted only for offline models (tiny random models built in the tests) and small data (no Jina AI Cloud
data names). Each test names the page it comes from; one failing means code written for Finetuner regressed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml
from tests.conftest import make_texts
from tests.fixtures.artifacts import tiny_models as tm

import finetuner
from finetuner import Document, DocumentArray
from finetuner.callback import BestModelCheckpoint, EarlyStopping, EvaluationCallback, WandBLogger

CPU = {"device": "cpu", "verbose": False}


@pytest.fixture(scope="module", autouse=True)
def _module_runs_home(tmp_path_factory):
    """The module's runs (made by module fixtures, before the per-test runs home is set) go where the tests look."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINETUNER_HOME", str(tmp_path_factory.getbasetemp() / "finetuner-home"))
        yield


@pytest.fixture(scope="module")
def data():
    return make_texts(6, seed=1)


@pytest.fixture(scope="module")
def evals():
    return make_texts(3, seed=2)


@pytest.fixture(scope="module")
def first_run(tiny_bert, data, evals):
    """walkthrough/run-job.md "Advanced configurations": every argument of that example."""
    finetuner.create_experiment(name="finetune-flickr-dataset")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = finetuner.fit(
            model=tiny_bert,
            train_data=data,
            eval_data=evals,
            run_name="finetune-flickr-dataset-efficientnet-1",
            description="this is a trial run on flickr8k dataset with efficientnet b0.",
            experiment_name="finetune-flickr-dataset",
            model_options={},
            loss="TripletMarginLoss",
            miner="TripletMarginMiner",
            miner_options={"margin": 0.2},
            scheduler="linear",
            scheduler_options={},
            optimizer="Adam",
            optimizer_options={"weight_decay": 0.01},
            learning_rate=1e-4,
            epochs=2,
            batch_size=8,
            scheduler_step="batch",
            freeze=False,
            output_dim=16,
            device="cpu",
            num_workers=0,
            to_onnx=False,
            csv_options=finetuner.CSVOptions(),
            public=True,
            num_items_per_class=4,
            verbose=False,
        )
    assert any("public=True has no meaning here" in str(w.message) for w in caught)
    return run


def test_run_job_advanced_configuration(first_run):
    assert first_run.status()["status"] == "FINISHED"
    assert first_run.description.startswith("this is a trial run")
    assert first_run.config["scheduler_options"] == {"scheduler_step": "batch"}
    assert sorted(first_run.metrics()) == ["after", "before"]


def test_save_model_page(first_run, tmp_path):
    """walkthrough/save-model.md: reconnect by name, artifact id, logs, save."""
    run = finetuner.get_run(
        run_name="finetune-flickr-dataset-efficientnet-1", experiment_name="finetune-flickr-dataset"
    )
    assert run.status()["status"] == "FINISHED"
    assert isinstance(run.artifact_id, str)
    entries = list(run.stream_logs())
    assert entries and entries == run.logs().splitlines()
    assert finetuner.get_model(run.artifact_id).output_dim == 16
    path = run.save_artifact(str(tmp_path / "tuned_model"))
    assert (tmp_path / "tuned_model" / run.name).is_dir() and path.endswith(run.name)


def test_continue_training_from_an_artifact(first_run, tiny_bert, data, evals):
    """walkthrough/run-job.md "Continue training on new data": model_artifact=run.artifact_id."""
    run2 = finetuner.fit(
        model=tiny_bert, train_data=data, eval_data=evals, model_artifact=first_run.artifact_id, epochs=1,
        batch_size=8, **CPU,
    )
    assert run2.status()["status"] == "FINISHED"
    # it starts from the tuned weights: its "before" is the first run's "after", on the same evaluation data
    before, after = run2.metrics()["before"], first_run.metrics()["after"]
    assert before == pytest.approx(after, abs=1e-6)
    assert finetuner.get_model(run2.artifact_id).output_dim == 16  # the artifact's head came along


def test_inference_page(first_run, tmp_path):
    """walkthrough/inference.md: get_model with a token, encode a list and a DocumentArray."""
    finetuner.login()
    token = finetuner.get_token()
    run = finetuner.get_run(experiment_name="finetune-flickr-dataset", run_name=first_run.name)
    model = finetuner.get_model(run.artifact_id, token=token, batch_size=4, device="cpu", logging_level="WARNING")
    texts = ["some text to encode"]
    embeddings = finetuner.encode(model=model, data=texts)
    assert embeddings.shape == (1, 16)
    da = DocumentArray([Document(text="some text to encode")])
    finetuner.encode(model=model, data=da)
    assert da[0].embedding.shape == (16,)
    zipped = tmp_path / "model.zip"
    import shutil

    shutil.make_archive(str(zipped.with_suffix("")), "zip", run.save_artifact(str(tmp_path / "art")))
    assert finetuner.encode(finetuner.get_model(str(zipped)), texts).shape == (1, 16)


def test_basic_concepts_and_experiments(first_run):
    """walkthrough/basic-concepts.md and Finetuner's experiment functions."""
    names = [e.name for e in finetuner.list_experiments()]
    assert "finetune-flickr-dataset" in names
    experiment = finetuner.get_experiment("finetune-flickr-dataset")
    assert experiment.status == "ACTIVE" and first_run.name in [r.name for r in experiment.list_runs()]
    page = finetuner.list_runs(experiment_name="finetune-flickr-dataset", page=1, size=1)
    assert len(page) == 1


def test_deleting_runs_and_experiments(tiny_bert, data):
    """Finetuner's integration test of runs: create, list, delete one, delete all, delete the experiment."""
    finetuner.create_experiment("to-delete")
    for name in ("one", "two"):
        finetuner.fit(tiny_bert, data, epochs=1, batch_size=8, experiment_name="to-delete", run_name=name, **CPU)
    assert len(finetuner.list_runs(experiment_name="to-delete")) == 2
    finetuner.delete_run(experiment_name="to-delete", run_name="one")
    assert [r.name for r in finetuner.list_runs(experiment_name="to-delete")] == ["two"]
    finetuner.delete_runs(experiment_name="to-delete")
    assert finetuner.list_runs(experiment_name="to-delete") == []
    finetuner.delete_experiment("to-delete")
    assert "to-delete" not in [e.name for e in finetuner.list_experiments()]


def test_using_callbacks_page(tiny_bert, data, evals):
    """advanced-topics/using-callbacks.md: evaluation without eval_data, examples, best model, early stopping."""
    run = finetuner.fit(
        model=tiny_bert,
        train_data=data,
        epochs=2,
        batch_size=8,
        learning_rate=1e-4,
        callbacks=[
            EvaluationCallback(
                query_data=evals, index_data=data, batch_size=8, num_workers=0, gather_examples=True,
                num_example_queries=3, query_sample_size=6, limit=5,
            ),
            BestModelCheckpoint(monitor="average_precision", mode="auto"),
            EarlyStopping(monitor="train_loss", mode="min", patience=2, min_delta=1, baseline=1.5),
        ],
        **CPU,
    )
    metrics = run.metrics()  # measured by the callback, as Finetuner did
    assert sorted(metrics) == ["after", "before"] and "precision_at_k" in metrics["after"]
    table = run.display_examples(k=2)
    assert table.count("query ") == 3 and "before" in table and "after" in table
    run.display_metrics()


def test_wandb_logger_without_an_account(tiny_bert, data, tmp_path, monkeypatch):
    """advanced-topics/using-callbacks.md WandBLogger(): Finetuner logged anonymously; here offline, with a warning."""
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path))
    with pytest.warns(UserWarning, match="logged offline"):
        logger = WandBLogger()
    run = finetuner.fit(tiny_bert, data, epochs=1, batch_size=8, callbacks=[logger], **CPU)
    assert run.status()["status"] == "FINISHED"
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_advanced_losses_page(tiny_bert, data):
    """advanced-topics/advanced-losses-optimizers-and-poolers.md: SphereFace losses with their own optimizer,
    GeM pooling by Finetuner's names, and run-job.md's layer-wise learning-rate decay."""
    for loss in ("ArcFaceLoss", "CosFaceLoss", "SubCenterArcFaceLoss"):
        run = finetuner.fit(
            tiny_bert, data, loss=loss, sampler="random", loss_optimizer="Adam",
            loss_optimizer_options={"weight_decay": 0.01}, epochs=1, batch_size=8, **CPU,
        )
        assert run.status()["status"] == "FINISHED", loss
    run = finetuner.fit(
        tiny_bert, data, epochs=1, batch_size=8,
        model_options={"pooler": "GeM", "pooler_options": {"p": 2.4, "eps": 1e-5}},
        optimizer="Adam", optimizer_options={"layer_wise_lr_decay": 0.98}, **CPU,
    )
    model = finetuner.get_model(run.artifact_id)
    assert model.pooling == "gem" and model.pooling_options == {"p": 2.4, "eps": 1e-5}


def test_negative_mining_page(tiny_bert, data):
    """advanced-topics/negative-mining.md (its 'TripleMarginLoss' is a typo Finetuner's docs carry)."""
    with pytest.raises(finetuner.ConfigError, match="did you mean 'TripletMarginLoss'"):
        finetuner.fit(tiny_bert, data, loss="TripleMarginLoss", miner="TripletMarginMiner", **CPU)
    run = finetuner.fit(
        tiny_bert, data, loss="TripletMarginLoss", miner="TripletMarginMiner",
        miner_options={"margin": 0.3, "type_of_triplets": "hard"}, epochs=1, batch_size=8, **CPU,
    )
    assert run.status()["status"] == "FINISHED"


def test_scheduler_options_of_finetuners_tests(tiny_bert, data):
    """Finetuner's own test config: scheduler_options with num_warmup_steps, scheduler_step and num_training_steps."""
    run = finetuner.fit(
        tiny_bert, data, scheduler="linear",
        scheduler_options={"num_warmup_steps": 2, "scheduler_step": "batch", "num_training_steps": "auto"},
        epochs=1, batch_size=8, **CPU,
    )
    assert run.status()["status"] == "FINISHED"


def test_pretrained_page_and_cos_sim():
    """get-started/pretrained.md (a Jina embedding model there; the offline MiniLM here)."""
    model = finetuner.build_model("sentence-transformers/all-MiniLM-L6-v2")
    embeddings = finetuner.encode(
        model=model, data=["how is the weather today", "What is the current weather like today?"]
    )
    assert 0.5 < finetuner.cos_sim(embeddings[0], embeddings[1]) <= 1.0
    assert {"jina-embedding-t-en-v1", "jina-embedding-s-en-v1", "jina-embedding-b-en-v1", "jina-embedding-l-en-v1",
            "distiluse-base-multi", "clip-base-multi", "mlp"} <= set(finetuner.list_models())


def test_choose_backbone_page():
    """walkthrough/choose-backbone.md: describe_models per task; mesh-to-mesh says it is not supported."""
    for task in ("text-to-text", "image-to-image", "text-to-image"):
        assert task in finetuner.describe_models(task=task, show=False)
    assert "not supported" in finetuner.describe_models(task="mesh-to-mesh", show=False)
    with pytest.raises(finetuner.ConfigError, match="3D mesh"):
        finetuner.build_model("pointnet-base")
    assert "mlp" in finetuner.list_model_options()


def test_create_training_data_page(tmp_path):
    """walkthrough/create-training-data.md: the Document forms, labelled CSV and summary()."""
    train_da = DocumentArray([
        Document(content="pencil skirt slim fit available for sell", tags={"finetuner_label": "skirt"}),
        Document(content="stripped over-sized shirt for sell", tags={"finetuner_label": "t-shirt"}),
        ...,
    ])
    assert "2 documents" in train_da.summary()
    assert "tags" in train_da[0].summary()
    csv_path = tmp_path / "your-data.csv"
    csv_path.write_text("Hello!,greeting-english\nHi there.,greeting-english\nI'm sorry!,apologize-english\n")
    docs = finetuner.data.load_data(str(csv_path), finetuner.CSVOptions(is_labeled=True))
    assert [d.tags["finetuner_label"] for d in docs][:2] == ["greeting-english"] * 2
    for doc in DocumentArray([Document(uri=tm.images(tmp_path / "img", 1)[0])]):
        doc.convert_uri_to_blob()
        assert doc.blob[:4] == b"\x89PNG"
    with pytest.raises(finetuner.ConfigError, match="Jina AI Cloud"):
        DocumentArray.pull("finetuner/tll-train-da")


def test_text_to_text_notebook(first_run, data):
    """notebooks/text_to_text.md: encode queries and an index, then query.match."""
    model = finetuner.get_model(artifact=first_run.artifact_id, device="cpu")
    query = DocumentArray([Document(text="apple banana")])
    index_data = DocumentArray([Document(text=t, tags={"finetuner_label": label}) for t, label in data])
    finetuner.encode(model=model, data=query)
    finetuner.encode(model=model, data=index_data)
    assert query.embeddings.shape == (1, 16)
    query.match(index_data, limit=10, metric="cosine")
    distances = [m.scores["cosine"].value for m in query[0].matches]
    assert len(distances) == 10 and distances == sorted(distances)


def test_text_to_image_notebook_and_select_model(tmp_path):
    """notebooks/text_to_image.md: CLIP with an EvaluationCallback per tower; build_model with select_model."""
    clip = str(tm.tiny_clip(tmp_path / "clip"))
    images = tm.images(tmp_path / "img", 6)
    pairs = [(f"a {w}", img) for w, img in zip(tm.WORDS, images)]
    queries = DocumentArray([Document(text=f"a {w}", tags={"finetuner_label": w}) for w in tm.WORDS[:6]])
    index = DocumentArray([Document(uri=img, tags={"finetuner_label": w}) for w, img in zip(tm.WORDS, images)])
    run = finetuner.fit(
        model=clip, train_data=pairs, epochs=1, learning_rate=1e-7, loss="CLIPLoss", batch_size=3,
        callbacks=[EvaluationCallback(model="clip-text", index_model="clip-vision", query_data=queries,
                                      index_data=index, multi_modal=True)],
        **CPU,
    )
    assert "reciprocal_rank" in run.metrics()["after"]
    with pytest.raises(finetuner.ConfigError, match=r"continuing a two-tower .*/models/clip-text"):
        finetuner.fit(model=clip, train_data=pairs, model_artifact=run.artifact_id, **CPU)
    artifact = run.save_artifact(str(tmp_path / "clip-model"))
    text_encoder = finetuner.get_model(artifact=artifact, select_model="clip-text")
    image_encoder = finetuner.get_model(artifact=artifact, select_model="clip-vision")
    text_da = DocumentArray([Document(text="some text to encode")])
    image_da = DocumentArray([Document(uri=images[0])])
    finetuner.encode(model=text_encoder, data=text_da)
    finetuner.encode(model=image_encoder, data=image_da)
    assert text_da.embeddings.shape == image_da.embeddings.shape == (1, 8)
    pretrained_text = finetuner.build_model(clip, select_model="clip-text", batch_size=2, device="cpu")
    assert finetuner.encode(pretrained_text, ["a red apple"]).shape == (1, 8)


def test_mlp_of_finetuners_integration_tests():
    """Finetuner's tests/integration/test_runs.py: model='mlp' on random feature Documents."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 128)).astype(np.float32)

    def generate(samples_per_class):
        return DocumentArray([
            Document(tensor=(centres[c] + rng.normal(size=128)).astype(np.float32), tags={"finetuner_label": str(c)})
            for c in range(4) for _ in range(samples_per_class)
        ])

    run = finetuner.fit(
        model="mlp", model_options={"input_size": 128, "hidden_sizes": [32]}, train_data=generate(12),
        eval_data=generate(6), loss="TripletMarginLoss", optimizer="Adam", learning_rate=1e-3, batch_size=12, epochs=2,
        **CPU,
    )
    metrics = run.metrics()
    assert metrics["after"]["average_precision"] > metrics["before"]["average_precision"]
    assert finetuner.get_model(run.artifact_id).output_dim == 32


def test_data_synthesis_notebook_refuses_cloud_models_with_the_fix():
    """notebooks/data_synthesis.md: Finetuner's preset models ran on its cloud (the local run is in
    test_synthesize.py)."""
    from finetuner.model import synthesis_model_en

    with pytest.raises(finetuner.ConfigError, match="SynthesisModels\\(generator="):
        finetuner.synthesize(query_data=["a query"], corpus_data=["a document"], models=synthesis_model_en)


def test_run_train_data_of_a_training_run_is_refused(first_run):
    with pytest.raises(finetuner.ConfigError, match="makes no training data"):
        _ = first_run.train_data


def test_config_records_what_finetuner_code_passed(first_run):
    saved = yaml.safe_load((first_run.directory / "metadata.yml").read_text())
    assert saved["description"].startswith("this is a trial run")
