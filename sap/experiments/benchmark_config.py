"""What ``sap benchmark`` runs: one dataclass tree, read from YAML and the command line.

Every field is a command-line option (``--cv.folds 3``, ``--seeds [0,1]``,
``--training.lesion_epochs 10``) and a YAML key; a preset (``--preset quick``) is a packaged
YAML file (``sap/configs/benchmark/<name>.yaml``) read before ``--config`` and the options.
Stage keys (:func:`stage_key`) hash the parts of the configuration a stage depends on, so a
rerun skips exactly the work whose inputs did not change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sap.experiments.pretrain_finetune import PretrainFinetuneSettings
from sap.tasks.initialisation import TransferMode

#: Initialisations an arm can start from.
InitName = Literal["scratch", "sap", "ssl"]


@dataclass
class CohortConfig:
    """The healthy cohort (pretraining) and the metastatic cohort (cross-validation).

    Args:
        healthy: folder of case folders or CSV manifest of healthy scans (skeleton labels
            for SAP; SSL ignores labels). ``None``: a phantom cohort generated into OUT.
        metastatic: the same for the patients (lesion labels). ``None``: a phantom cohort.
        phantom_healthy, phantom_metastatic: phantom cohort sizes.
        phantom_seed: seed of the phantom cohorts (the metastatic one uses ``seed + 1``).
        phantom_kwargs: further arguments of :func:`sap.phantom.generate_cohort` (``shape``,
            ``spacing_mm``, ``min_lesion_voxels``, ...).
    """

    healthy: str | None = None
    metastatic: str | None = None
    phantom_healthy: int = 8
    phantom_metastatic: int = 21
    phantom_seed: int = 0
    phantom_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class CrossValidationConfig:
    """Stratified k-fold cross-validation (:func:`sap.experiments.cv_splits.stratified_folds`).

    Args:
        folds: number of folds (paper: 7).
        tuning_fold: the fold that tunes every model's threshold.
        test_folds: folds to score (default: all others).
        seed: seed of the split.
    """

    folds: int = 7
    tuning_fold: int = 0
    test_folds: list[int] | None = None
    seed: int = 0


@dataclass
class ArmConfig:
    """One lesion arm: its initialisation and encoder learning rate.

    Args:
        init: ``"scratch"`` (random), ``"sap"`` (the skeleton model) or ``"ssl"``.
        lr_encoder: encoder learning rate (decoder and head: ``training.lesion_lr_decoder``),
            or a list of candidate rates. With candidates the arm is fine-tuned once per
            candidate for every test fold and seed, and the candidate with the highest
            patient-level F-beta on the tuning fold (at its own tuned threshold) is the one
            tested; ties go to the first listed. The choice never sees a test patient's score.
        transfer: groups loaded from the pretrained model; default by ``init``
            (``"encoder+decoder"`` for SAP, ``"encoder"`` for SSL).
    """

    init: InitName = "scratch"
    lr_encoder: float | list[float] = 1e-5
    transfer: TransferMode | None = None

    def transfer_mode(self) -> TransferMode:
        """The ``transfer`` option of the fine-tuning task."""
        if self.transfer is not None:
            return self.transfer
        return "encoder" if self.init == "ssl" else "encoder+decoder"

    def candidate_rates(self) -> list[float]:
        """The encoder learning rates this arm is fine-tuned with (one unless a list is given)."""
        rates = self.lr_encoder if isinstance(self.lr_encoder, list | tuple) else [self.lr_encoder]
        return [float(rate) for rate in rates]

    def with_rate(self, lr_encoder: float) -> ArmConfig:
        """This arm with one encoder rate: what a single fine-tuning run depends on."""
        return ArmConfig(self.init, float(lr_encoder), self.transfer)


def paper_arms() -> dict[str, ArmConfig]:
    """The paper's three arms and encoder rates (decoder and head: 1e-5)."""
    return {
        "scratch": ArmConfig("scratch", 1e-5),
        "ssl": ArmConfig("ssl", 5e-6),
        "sap": ArmConfig("sap", 2e-6),
    }


@dataclass
class EvaluationConfig:
    """How every test fold is scored (``sap.metrics``; definitions in ``docs/metrics.md``).

    Args:
        min_volume_ml: volume limit of the large-lesion subset (paper: 1 mL).
        beta: beta of the F-score that tunes thresholds and is reported (paper: 2).
        min_prob: lowest threshold of the FROC sweep and of the tuning.
        bootstrap_resamples: resamples of the median CIs (paper: 1000).
        predict_batch_size: sliding windows per forward pass at prediction.
    """

    min_volume_ml: float = 1.0
    beta: float = 2.0
    min_prob: float = 0.01
    bootstrap_resamples: int = 1000
    predict_batch_size: int = 16


@dataclass
class FeatureConfig:
    """The paper's Fig. 3: t-SNE of bottleneck features before fine-tuning.

    Args:
        enabled: compute it.
        patches_per_class: lesion and lesion-free patches drawn from the tuning fold.
        perplexity: t-SNE perplexity (lowered automatically for few patches).
    """

    enabled: bool = True
    patches_per_class: int = 48
    perplexity: float = 15.0


@dataclass
class BenchmarkConfig:
    """Everything ``sap benchmark`` does; defaults follow the paper's protocol.

    Args:
        seeds: fine-tuning seeds; every arm and fold is trained once per seed, and all arms
            share data order, augmentation and initial head weights for a seed.
        reference_arm: the arm the p-values compare the others with.
        cohort: the two cohorts.
        cv: the cross-validation.
        training: model, patch, budgets and learning rates
            (:class:`~sap.experiments.pretrain_finetune.PretrainFinetuneSettings`;
            ``training.seed`` seeds both pretraining runs). ``lesion_lr_encoder_sap`` is not
            used here: every arm names its own encoder rate.
        arms: the lesion arms by name.
        evaluation: scoring.
        features: the t-SNE analysis.
        workers: processes that run pretraining, fine-tuning and scoring jobs side by side
            (each with ``training.torch_threads`` threads). Results do not depend on it.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    reference_arm: str = "sap"
    cohort: CohortConfig = field(default_factory=CohortConfig)
    cv: CrossValidationConfig = field(default_factory=CrossValidationConfig)
    training: PretrainFinetuneSettings = field(default_factory=PretrainFinetuneSettings)
    arms: dict[str, ArmConfig] = field(default_factory=paper_arms)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    workers: int = 1

    def check(self) -> None:
        """Raise a ``ValueError`` naming the first setting that cannot work."""
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.reference_arm not in self.arms:
            raise ValueError(
                f"reference_arm {self.reference_arm!r} is not one of the arms {list(self.arms)}"
            )
        for name, arm in self.arms.items():
            if arm.init not in ("scratch", "sap", "ssl"):
                raise ValueError(
                    f"arm {name!r}: init must be scratch, sap or ssl, got {arm.init!r}"
                )
            if not name.replace("_", "").isalnum():
                raise ValueError(f"arm name {name!r}: use letters, digits and '_' only")
            rates = arm.candidate_rates()
            # Distinct as printed too: each candidate's folder is named by f"{rate:g}".
            if not rates or len({f"{r:g}" for r in rates}) != len(rates) or min(rates) <= 0:
                raise ValueError(
                    f"arm {name!r}: lr_encoder must be a positive rate or a list of distinct "
                    f"positive rates, got {arm.lr_encoder!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples as lists)."""
        return json.loads(json.dumps(asdict(self), default=list))

    def pretraining_needed(self) -> set[str]:
        """``{"sap", "ssl"}`` or the part of it some arm starts from."""
        return {arm.init for arm in self.arms.values()} - {"scratch"}


def stage_key(*parts: Any) -> str:
    """A short hash of a stage's inputs: equal inputs, equal key (dict order does not matter).

    >>> stage_key({"a": 1, "b": [2]}) == stage_key({"b": [2], "a": 1})
    True
    """
    text = json.dumps(parts, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, tuple | set):
        return sorted(value) if isinstance(value, set) else list(value)
    return str(value)


__all__ = [
    "ArmConfig",
    "BenchmarkConfig",
    "CohortConfig",
    "CrossValidationConfig",
    "EvaluationConfig",
    "FeatureConfig",
    "paper_arms",
    "stage_key",
]
