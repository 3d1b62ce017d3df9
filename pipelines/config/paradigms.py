"""The learning paradigms' sections: `continual:`, `ssl:` and `federated:`.

Each is off by default (`continual.scenario`, `ssl.task` None; `federated:` is read only by
`kapps federate`), so an ordinary run's config and name do not depend on them.
"""

from typing import Annotated, Literal

from pydantic import Field

from pipelines.config.base import Section


class ContinualConfig(Section):
    """Continual learning: the classes (or domains) arrive as tasks, one after another."""

    # class_il | task_il (Split: classes in groups) | domain_il (every class, a transform
    # per task); None: ordinary training
    scenario: Literal["class_il", "task_il", "domain_il"] | None = None
    domain: Literal["permuted", "rotated"] = "permuted"  # domain_il: each task's transform
    tasks: int = Field(5, ge=2)  # how many tasks
    classes_per_task: int = Field(2, ge=1)  # class_il, task_il
    order: list[int] | None = None  # the classes in the order they arrive; None: 0, 1, 2, …
    # finetune (lower bound) | joint (upper bound) | ewc (online) | lwf | er | der | derpp
    method: Literal["finetune", "joint", "ewc", "lwf", "er", "der", "derpp"] = "finetune"
    buffer: int = Field(200, ge=1)  # er, der, derpp: examples kept for replay
    replay_batch: int | None = Field(None, ge=1)  # replayed per step; None: train.batch_size
    alpha: float = Field(0.2, ge=0)  # der, derpp: weight of the logit match
    beta: float = Field(1.0, ge=0)  # derpp: weight of the replayed labels' cross-entropy
    ewc_lambda: float = Field(90.0, ge=0)  # ewc: strength of the pull to the anchored weights
    ewc_gamma: float = Field(1.0, ge=0, le=1)  # ewc: decay of the running Fisher per task
    lwf_lambda: float = Field(1.0, ge=0)  # lwf: weight of the distillation
    temperature: float = Field(2.0, gt=0)  # lwf: distillation temperature
    seed: int = 0  # the permutations and angles of domain_il


class SSLConfig(Section):
    """`kapps pretrain`: a pretext task trains a backbone on the images without their labels."""

    # rotation (Gidaris et al. 2018) | jigsaw (Noroozi & Favaro 2016) | colorization
    # (Zhang et al. 2016) | simclr (Chen et al. 2020); None: no pretraining
    task: Literal["rotation", "jigsaw", "colorization", "simclr"] | None = None
    epochs: int | None = Field(None, ge=1)  # pretext epochs; None: train.epochs
    lr: float | None = Field(None, gt=0)  # pretext peak learning rate; None: train.lr
    batch_size: int | None = Field(None, ge=2)  # pretext images per step; None: train.batch_size
    include_test: bool = True  # also pretrain on the test images (their labels are unknown)
    # what backbone.keras carries: maps (the layers up to the last feature map; a classifier's
    # dense layers start afresh, as the pretext task specialises them: Gidaris et al. 2018,
    # section 3.1) or all (every layer below the head)
    transfer: Literal["maps", "all"] = "maps"
    grid: int | None = Field(None, ge=2, le=4)  # jigsaw: tiles per side; None: 3, or 2 under 64 px
    permutations: int | None = Field(None, ge=2)  # jigsaw: permutation classes; None: all of a
    # 2×2 grid's 24, 100 for 3×3 (chosen by maximal Hamming distance)
    jitter: float = Field(0.25, ge=0, lt=1)  # jigsaw: share of a cell a tile's crop leaves out
    temperature: float = Field(0.5, gt=0)  # simclr: NT-Xent temperature
    projection_dim: int = Field(128, ge=8)  # simclr: output of the projection head
    crop_scale: float = Field(0.3, gt=0, le=1)  # simclr: smallest random crop (share of area)
    rebalance: float = Field(0.5, ge=0, le=1)  # colorization: λ mixing the bin prior with uniform
    # after pretraining: fine-tune (and linear-probe) every data.label_fraction in `fractions`
    # with each seed in `seeds`, against training from scratch; writes grid.csv and grid.png
    evaluate: bool = False
    freeze_epochs: int = Field(0, ge=0)  # evaluate: fine-tuning's train.freeze_epochs
    backbone_lr_mult: float = Field(1.0, ge=0, le=1)  # evaluate: fine-tuning's backbone_lr_mult
    fractions: list[Annotated[float, Field(gt=0, le=1)]] = [0.01, 0.05, 0.1, 1.0]  # evaluate
    seeds: list[int] = [0, 1, 2]  # evaluate: train.seed of each repeat


class FederatedConfig(Section):
    """`kapps federate`: clients that keep their rows train in rounds; a server averages."""

    clients: int = Field(10, ge=1)  # clients the training split is dealt out to
    rounds: int = Field(20, ge=1)  # rounds of: send the global model, train locally, average
    fraction: float = Field(1.0, gt=0, le=1)  # share of the connected clients each round samples
    min_clients: int | None = Field(None, ge=1)  # connected clients a round waits for; None: all
    local_epochs: int = Field(1, ge=1)  # epochs each sampled client trains on its rows
    strategy: Literal["fedavg", "fedprox"] = "fedavg"  # Flower's FedAvg or FedProx
    mu: float = Field(0.01, ge=0)  # fedprox: weight of the proximal term μ/2 · ‖w − w_global‖²
    partition: Literal["iid", "dirichlet"] = "iid"  # how rows are dealt: at random, or by
    # class with proportions drawn from Dirichlet(alpha) per class
    alpha: float = Field(0.5, gt=0)  # dirichlet: concentration; small: few classes per client
    seed: int = 0  # the partition's and the client sampling's seed
    centralised: bool = True  # also train the same model on all rows, as the reference
    round_timeout: float = Field(3600.0, gt=0)  # seconds the server waits for a round's replies
    cpus_per_client: float = Field(1.0, gt=0)  # simulation: CPU cores each client holds
    gpus_per_client: float = Field(0.0, ge=0)  # simulation: share of a GPU each client holds


# How a pretrained backbone is evaluated, not how it is trained: not part of its run's name,
# so `ssl.evaluate=true` after a pretraining evaluates that run.
SSL_EVALUATION_KEYS = ("evaluate", "fractions", "seeds", "freeze_epochs", "backbone_lr_mult")


# Where a federation runs, not what it computes: never part of its run's name.
FEDERATED_PLACEMENT_KEYS = ("round_timeout", "cpus_per_client", "gpus_per_client", "centralised")
