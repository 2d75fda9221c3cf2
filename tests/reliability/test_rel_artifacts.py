"""Nothing executed, nothing half-written: safe artifact loading (zip, no unpickling) and atomic saves."""

from __future__ import annotations

import json
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import finetuner
from finetuner.errors import ArtifactError
from finetuner.fileio import atomic_directory
from finetuner.models import build_model, save_model
from finetuner.safety import load_torch_file, safe_extract_zip


class Payload:
    """Unpickling this object runs ``Path(marker).touch()``: the marker file proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))


@pytest.fixture(scope="module")
def artifact(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run-shaped artifact folder holding the tiny BERT (with a head, so a Dense layer is saved too)."""
    root = tmp_path_factory.mktemp("artifact") / "run-1"
    model = build_model(tiny_bert, output_dim=8)
    torch.nn.init.normal_(model.head.linear.weight)
    save_model(model, root / "models" / "model")
    (root / "models" / "input-map.yml").write_text("model: text\n")
    (root / "config.yml").write_text("model: tiny\n")
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _zip(folder: Path, archive: Path, arcroot: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, str(Path(arcroot) / path.relative_to(folder)))
    return archive


TEXTS = ["apple banana", "car bus", "hammer"]


@pytest.mark.parametrize("arcroot", ["", "run-1"])
def test_get_model_from_a_zip_equals_the_folder(artifact: Path, tmp_path: Path, arcroot: str) -> None:
    archive = _zip(artifact, tmp_path / "artifact.zip", arcroot)
    from_zip = finetuner.encode(finetuner.get_model(archive), TEXTS)
    from_folder = finetuner.encode(finetuner.get_model(artifact), TEXTS)
    np.testing.assert_allclose(from_zip, from_folder, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name != "artifact.zip"], "nothing extracted next to the zip"


@pytest.mark.parametrize(
    "member, why",
    [
        ("../escape.txt", "climbs out of the folder with '..'"),
        ("models/../../escape.txt", "climbs out of the folder with '..'"),
        ("/tmp/finetuner-absolute-escape.txt", "is an absolute path"),
        ("C:/windows/escape.txt", "is an absolute path"),
        ("..\\escape.txt", "climbs out of the folder with '..'"),
    ],
)
def test_zip_with_escaping_members_is_refused(artifact: Path, tmp_path: Path, member: str, why: str) -> None:
    archive = _zip(artifact, tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(member, "pwned")
    with pytest.raises(ArtifactError, match=f"member {member!r} {why}".replace("\\", "\\\\").replace("(", r"\(")):
        finetuner.get_model(archive)
    assert not (tmp_path.parent / "escape.txt").exists()
    assert not Path("/tmp/finetuner-absolute-escape.txt").exists()


def test_zip_with_a_symlink_is_refused(artifact: Path, tmp_path: Path) -> None:
    archive = _zip(artifact, tmp_path / "link.zip")
    info = zipfile.ZipInfo("run-1/models/model/evil-link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArtifactError, match="is a link or special file"):
        finetuner.get_model(archive)


def test_zip_bomb_and_non_zip_are_refused(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(artifact, tmp_path / "big.zip")
    monkeypatch.setattr("finetuner.safety.MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ArtifactError, match=r"would unpack to .* likely zip bomb"):
        safe_extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is written when a check fails"
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a readable zip archive"):
        finetuner.get_model(fake)


def test_pickle_next_to_safetensors_is_never_unpickled(artifact: Path, tmp_path: Path) -> None:
    folder = _copy(artifact, tmp_path / "run-1")
    marker = tmp_path / "PWNED"
    plant_pickle(folder / "models" / "model" / "pytorch_model.bin", marker)
    plant_pickle(folder / "models" / "model" / "training_args.bin", marker)
    model = finetuner.get_model(folder)
    assert finetuner.encode(model, TEXTS).shape == (3, 8)
    archive = _zip(folder, tmp_path / "with-pickles.zip")
    finetuner.get_model(archive)
    assert not marker.exists(), "loading an artifact ran code from a pickle"


def test_pickle_only_weights_are_refused_without_running_them(artifact: Path, tmp_path: Path) -> None:
    folder = _copy(artifact, tmp_path / "run-1")
    marker = tmp_path / "PWNED"
    (folder / "models" / "model" / "model.safetensors").unlink()
    (folder / "models" / "model" / "2_Dense" / "model.safetensors").unlink()
    plant_pickle(folder / "models" / "model" / "pytorch_model.bin", marker)
    with pytest.raises(ArtifactError, match=r"pickle-based weights \(pytorch_model.bin\) and no safetensors"):
        finetuner.get_model(folder)
    with pytest.raises(ArtifactError, match="pickle-based weights"):
        finetuner.get_model(_zip(folder, tmp_path / "pickles.zip"))
    assert not marker.exists()


def test_torch_files_are_read_with_weights_only(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    plant_pickle(tmp_path / "optimizer.pt", marker)
    with pytest.raises(ArtifactError, match="not a plain tensor file and was not loaded"):
        load_torch_file(tmp_path / "optimizer.pt")
    torch.save(Payload(marker), tmp_path / "torch-format.pt")  # a real torch zip file with a payload inside
    with pytest.raises(ArtifactError, match="weights_only=True"):
        load_torch_file(tmp_path / "torch-format.pt")
    assert not marker.exists()


def test_custom_code_and_odd_model_names_are_refused(artifact: Path, tmp_path: Path) -> None:
    folder = _copy(artifact, tmp_path / "run-1")
    config = folder / "models" / "model" / "config.json"
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps({**cfg, "auto_map": {"AutoModel": "evil.EvilModel"}}))
    with pytest.raises(ArtifactError, match="asks for custom model code"):
        finetuner.get_model(folder)
    other = _copy(artifact, tmp_path / "run-2")
    (other / "models" / "input-map.yml").write_text("'../../elsewhere': text\n")
    with pytest.raises(ArtifactError, match="not a plain folder name"):
        finetuner.get_model(other)


def test_a_crash_while_saving_a_model_leaves_no_half_written_model(tiny_bert: str, tmp_path: Path) -> None:
    model = build_model(tiny_bert)
    target = tmp_path / "models" / "model"

    class Boom(RuntimeError):
        pass

    original = model.save

    def save_then_crash(directory):
        original(directory)  # everything but metadata.yml is written, then the process "dies"
        raise Boom

    model.save = save_then_crash
    with pytest.raises(Boom):
        save_model(model, target)
    assert not target.exists(), "a half-written model is not left under the final name"
    model.save = original
    save_model(model, target)
    before = sorted(p.name for p in target.iterdir())
    model.save = save_then_crash
    with pytest.raises(Boom):
        save_model(model, target)
    assert sorted(p.name for p in target.iterdir()) == before, "the previous model is kept intact"
    assert [p.name for p in target.parent.iterdir()] == ["model"], "no temporary folders left behind"
    assert finetuner.encode(finetuner.get_model(target), TEXTS).shape == (3, 32)


def test_atomic_directory_keeps_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    with atomic_directory(target) as staging:
        (staging / "a").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as staging:
        (staging / "a").write_text("new")
        raise KeyboardInterrupt
    assert (target / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
