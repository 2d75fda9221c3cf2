"""The settings of one run (:class:`TrainingConfig`), checked all at once before anything is built.

``fit``'s check phase (:mod:`finetuner.training.check`) resolves what the data and the machine decide, once: the
loss (``'auto'`` by the data) and the batch size (``None``: 32 on the CPU, 64 on a GPU, at most the training items);
everything after it reads the resolved, frozen config, and ``config.yml`` records it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from finetuner.errors import ConfigError, unknown_name

OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam")
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
SAMPLERS = ("auto", "class", "random", "length")
#: what ``fit`` does with an item whose remote image cannot be fetched before training
IMAGE_ERROR_POLICIES = ("fail", "skip")
PRECISIONS = ("auto", "no", "fp16", "bf16")
#: what a streamed run does with a bad row met in its index pass (``fit(streaming=True, on_bad_row=...)``)
BAD_ROW_POLICIES = ("fail", "skip")
#: a two-tower model built from ``{'text': ..., 'vision': ...}`` trains its new projection heads at this multiple of
#: ``learning_rate`` unless ``head_learning_rate`` is given: on the emoji benchmark against open_clip's recipe
#: (MiniLM + MobileNetV2, 5 epochs, batch 32, lr 1e-4; benchmarks/README.md, "CLIP quality against open_clip")
#: text-to-image MRR@20 went from 0.326 (heads at 1x) to 0.337 (means of 3 seeds), image-to-text from 0.337 to 0.345
TWO_TOWER_HEAD_LR_FACTOR = 10.0
#: the vision tower of a two-tower model built from ``{'text': ..., 'vision': ...}`` trains on random crops of 90-100%
#: of the picture (aspect 3/4..4/3, no flip: a flipped picture may no longer match its caption, e.g. "left arrow"),
#: resized once to the input size, as open_clip's training transform does, unless ``vision_options['augment']`` is
#: given (False: none). On the same benchmark, with the heads at 10x, text-to-image MRR@20 went from 0.337 (no
#: augmentation) to 0.345 (means of seeds 0-2; open_clip's recipe 0.344), image-to-text from 0.345 to 0.346.
TWO_TOWER_AUGMENT: dict[str, Any] = {"scale": (0.9, 1.0), "ratio": (3 / 4, 4 / 3), "flip": 0.0}
#: ``loss='SimCLR'``'s two views of an image, unless ``model_options['augment']`` is given: SimCLR's (Chen et al. 2020)
#: random resized crop of 8-100% of the area (aspect 3/4..4/3) with a flip, then colour distortion of strength 0.5
#: (its CIFAR-10 setting; 1.0 for ImageNet) and grey with probability 0.2. Its figure 5 shows crop plus colour as the
#: composition that matters; its gaussian blur (ImageNet only) is left out.
SIMCLR_AUGMENT: dict[str, Any] = {
    "scale": (0.08, 1.0),
    "ratio": (3 / 4, 4 / 3),
    "flip": 0.5,
    "color_jitter": 0.5,
    "grayscale": 0.2,
}
#: ``batch_size=None`` by device type (any other type: the CPU's)
DEFAULT_BATCH_SIZE = {"cuda": 64, "cpu": 32}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything ``fit`` needs to train, in one serialisable place (written to ``config.yml``).

    Example:
        >>> TrainingConfig(model='bert-base-en', epochs=2).learning_rate_or_default()
        1e-05
    """

    model: str = ""
    loss: Any = "auto"
    loss_options: dict[str, Any] = field(default_factory=dict)
    miner: str | None = None
    miner_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "Adam"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    learning_rate: float | None = None
    #: the learning rate of the projection heads that ``output_dim`` adds (new, randomly initialised layers); None:
    #: the tower's rate. ``fit`` resolves None to 10 x ``learning_rate`` for a two-tower model built from
    #: ``{'text': ..., 'vision': ...}`` (:data:`TWO_TOWER_HEAD_LR_FACTOR`), so ``config.yml`` records the rate used
    head_learning_rate: float | None = None
    loss_optimizer: str | None = None
    loss_optimizer_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 5
    batch_size: int | str | None = None
    scheduler: str | None = None
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    freeze: bool | int | dict[str, bool | int] = False
    output_dim: int | None = None
    device: str = "auto"
    precision: str = "auto"
    num_workers: int | str = "auto"
    num_items_per_class: int = 4
    sampler: str = "auto"
    val_split: float = 0.0
    seed: int | None = None
    max_grad_norm: float | None = None
    gradient_accumulation_steps: int = 1
    mini_batch_size: int | None = None
    gradient_checkpointing: bool = False
    compile: bool = False
    adapter: str | None = None
    adapter_options: dict[str, Any] = field(default_factory=dict)
    log_every: int = 10
    streaming: bool = False
    validate_rows: int | str = 1000
    on_bad_row: str = "fail"
    prefetch_images: bool = False
    on_image_error: str = "fail"
    run_name: str | None = None
    experiment_name: str | None = None

    def workers(self, device_type: str) -> int:
        """DataLoader worker processes: the given number, or for ``'auto'`` none on the CPU (workers would take
        cores from the model) and up to 8 beside a GPU (decoding and collating overlap the GPU's work), sharing the
        machine's cores with the other training processes on it (``LOCAL_WORLD_SIZE``, set by torchrun/accelerate).

        Example:
            >>> TrainingConfig().workers('cpu'), TrainingConfig(num_workers=3).workers('cpu')
            (0, 3)
        """
        if self.num_workers != "auto":
            return int(self.num_workers)
        if device_type == "cpu":
            return 0
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        return max(0, min(8, (os.cpu_count() or 1) // local - 1))

    def device_type(self) -> str:
        """``'cpu'``, ``'cuda'`` or ``'mps'``: where ``device`` puts the run (``'auto'``: a GPU when there is one).

        Example:
            >>> TrainingConfig(device='cpu').device_type(), TrainingConfig(device='cuda:1').device_type()
            ('cpu', 'cuda')
        """
        import torch

        if self.device == "cpu" or (self.device == "auto" and not torch.cuda.is_available()):
            return "cpu"
        return "mps" if self.device == "mps" else "cuda"

    def default_batch_size(self) -> int:
        """The batch size ``batch_size=None`` stands for: 64 on a GPU, 32 elsewhere.

        Example:
            >>> TrainingConfig(device='cpu').default_batch_size()
            32
        """
        return DEFAULT_BATCH_SIZE.get(self.device_type(), DEFAULT_BATCH_SIZE["cpu"])

    def learning_rate_or_default(self) -> float:
        """The learning rate to use: the given one, else 1e-5 for transformers-sized models' fine-tuning (1e-4 when
        an adapter trains: its low-rank update starts at zero and takes larger steps)."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 1e-4 if self.adapter else 1e-5

    def problems(self) -> list[str]:
        """Every invalid setting, one message each (empty when all is well)."""
        out: list[str] = []

        def check(ok: bool, message: str) -> None:
            if not ok:
                out.append(message)

        check(
            _is_int(self.epochs) and self.epochs >= 1, f"epochs must be an int >= 1; received {self.epochs!r}"
        )
        check(
            self.learning_rate is None or (_is_num(self.learning_rate) and 0 < self.learning_rate < 1),
            f"learning_rate must be a number in (0, 1); received {self.learning_rate!r}",
        )
        check(
            self.head_learning_rate is None or (_is_num(self.head_learning_rate) and 0 < self.head_learning_rate < 1),
            f"head_learning_rate must be a number in (0, 1) or None; received {self.head_learning_rate!r}",
        )
        check(
            self.batch_size is None or self.batch_size == "auto" or (_is_int(self.batch_size) and self.batch_size >= 2),
            "batch_size must be an int >= 2, 'auto' (the largest that fits in memory) or None (32 on the CPU, 64 on a "
            f"GPU); received {self.batch_size!r}",
        )
        check(
            _is_int(self.num_items_per_class) and self.num_items_per_class >= 1,
            f"num_items_per_class must be an int >= 1; received {self.num_items_per_class!r}",
        )
        check(
            _is_num(self.val_split) and 0 <= self.val_split < 1,
            f"val_split must be a number in [0, 1); received {self.val_split!r}",
        )
        check(
            self.output_dim is None or (_is_int(self.output_dim) and self.output_dim >= 1),
            f"output_dim must be an int >= 1 (or None); received {self.output_dim!r}",
        )
        check(
            self.num_workers == "auto" or (_is_int(self.num_workers) and self.num_workers >= 0),
            "num_workers must be an int >= 0 or 'auto' (0 on the CPU, up to 8 beside a GPU); received "
            f"{self.num_workers!r}",
        )
        check(
            _is_int(self.gradient_accumulation_steps) and self.gradient_accumulation_steps >= 1,
            f"gradient_accumulation_steps must be an int >= 1; received {self.gradient_accumulation_steps!r}",
        )
        check(
            self.mini_batch_size is None or (_is_int(self.mini_batch_size) and self.mini_batch_size >= 1),
            f"mini_batch_size (gradient cache) must be an int >= 1 or None; received {self.mini_batch_size!r}",
        )
        check(self.seed is None or _is_int(self.seed), f"seed must be an int or None; received {self.seed!r}")
        check(isinstance(self.streaming, bool), f"streaming must be True or False; received {self.streaming!r}")
        check(
            self.validate_rows == "all" or (_is_int(self.validate_rows) and self.validate_rows >= 1),
            "validate_rows (streaming: rows checked up front, the first N and N drawn at random) must be an int "
            f">= 1 or 'all'; received {self.validate_rows!r}",
        )
        check(
            isinstance(self.prefetch_images, bool),
            f"prefetch_images must be True or False; received {self.prefetch_images!r}",
        )
        for option, value, valid in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("scheduler", self.scheduler, SCHEDULERS),
            ("sampler", self.sampler, SAMPLERS),
            ("precision", self.precision, PRECISIONS),
            ("on_bad_row", self.on_bad_row, BAD_ROW_POLICIES),
            ("on_image_error", self.on_image_error, IMAGE_ERROR_POLICIES),
        ):
            if value is not None and value not in valid:
                out.append(str(unknown_name(option, value, valid)))
        if self.loss_optimizer is not None and self.loss_optimizer not in OPTIMIZERS:
            out.append(str(unknown_name("loss_optimizer", self.loss_optimizer, OPTIMIZERS)))
        check(
            isinstance(self.device, str)
            and (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")),
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; received {self.device!r}",
        )
        return out

    def validate(self) -> None:
        """Raise one :class:`~finetuner.errors.ConfigError` listing every invalid setting."""
        problems = self.problems()
        if problems:
            raise ConfigError(f"{len(problems)} invalid setting(s):\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML-safe) of the settings; objects (a loss or miner instance) appear by class name.

        Example:
            >>> import torch
            >>> TrainingConfig(loss=torch.nn.MSELoss()).to_dict()['loss']
            '<MSELoss instance>'
        """
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return f"<{type(value).__name__} instance>"
