"""How many points each metric uses: disentanglement_lib's full settings, and a fast variant.

The full settings are those of disentanglement_lib's ``unsupervised_study_v1`` metric configs
(Locatello et al. 2019), so that numbers are comparable with the literature; ``fast`` runs the same
code with fewer points, votes and trees, for quick studies (its numbers are noisier, and DCI's
importances come from fewer trees).
"""

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSettings:
    """Sizes and constants of the metrics (one object for a whole evaluation; recorded with results).

    :param int num_points: points encoded for MIG, active units, the total correlation and the KL per
        dimension (disentanglement_lib's ``mig.num_train``).
    :param int num_bins: equal-width histogram bins per latent for MIG.
    :param int factor_vae_batch_size: points per vote of the FactorVAE score.
    :param int factor_vae_num_train: training votes of the FactorVAE score.
    :param int factor_vae_num_eval: evaluation votes of the FactorVAE score.
    :param int factor_vae_num_variance: points for the global variances of the FactorVAE score.
    :param float factor_vae_prune_threshold: latents whose global std is below it are pruned.
    :param int dci_num_train: training points of DCI's gradient-boosted trees.
    :param int dci_num_test: test points of DCI (informativeness).
    :param int dci_n_estimators: boosting stages per factor (scikit-learn's default, 100).
    :param int sap_num_train: training points of SAP's linear SVMs.
    :param int sap_num_test: test points of SAP.
    :param float sap_c: the SVMs' regularisation constant C.
    :param float active_threshold: a latent is active when the variance of its representation over the
        data exceeds this (Burda et al. 2016).
    :param int tc_num_samples: samples at which the aggregate posterior is evaluated for the total
        correlation.
    :param int tc_num_components: points of the data set whose posteriors make the aggregate posterior's
        mixture for the total correlation, encoded apart from the pool (at most the data set; on
        Gaussian codes of known total correlation, 100,000 components and 10,000 samples give it within
        3% at 3, 10 and 20 dimensions where the posteriors overlap: ``benchmarks/bench_total_correlation.py``).
    :param int iw_num_samples: importance samples per image for the importance-weighted log-likelihood.
    :param int iw_num_images: images for the importance-weighted log-likelihood.
    :param int seed: seed of every random choice of the metrics.
    """

    num_points: int = 10_000
    num_bins: int = 20
    factor_vae_batch_size: int = 64
    factor_vae_num_train: int = 10_000
    factor_vae_num_eval: int = 5_000
    factor_vae_num_variance: int = 10_000
    factor_vae_prune_threshold: float = 0.05
    dci_num_train: int = 10_000
    dci_num_test: int = 5_000
    dci_n_estimators: int = 100
    sap_num_train: int = 10_000
    sap_num_test: int = 5_000
    sap_c: float = 0.01
    active_threshold: float = 0.01
    tc_num_samples: int = 10_000
    tc_num_components: int = 100_000
    iw_num_samples: int = 1_000
    iw_num_images: int = 1_000
    seed: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"MetricSettings.{field.name}={value!r}: expected a nonnegative integer")
            if field.type is float and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"MetricSettings.{field.name}={value!r}: expected a nonnegative number")
        at_least_two = ("num_points", "factor_vae_batch_size", "factor_vae_num_variance", "dci_num_train")
        at_least_two += ("dci_num_test", "sap_num_train", "sap_num_test", "iw_num_images")
        for field in dataclasses.fields(self):
            value, minimum = getattr(self, field.name), 2 if field.name in at_least_two else 1
            if field.type is int and field.name != "seed" and value < minimum:
                raise ValueError(f"MetricSettings.{field.name}={value}: expected at least {minimum}")
        if self.sap_c <= 0:
            raise ValueError(f"MetricSettings.sap_c={self.sap_c}: expected a positive number")

    @property
    def pool_size(self) -> int:
        """Points one shared pool needs to serve every metric (MIG, DCI and SAP splits, FactorVAE)."""
        return max(
            self.num_points,
            self.dci_num_train + self.dci_num_test,
            self.sap_num_train + self.sap_num_test,
            self.factor_vae_num_variance,
        )

    def replace(self, **changes) -> "MetricSettings":
        """A copy with some fields changed (checked like the original)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: disentanglement_lib's settings: 10,000 points, 10,000/5,000 votes or train/test points.
FULL = MetricSettings()
#: The same code with fewer points, votes and trees, for quick studies.
FAST = MetricSettings(
    num_points=2_000,
    factor_vae_num_train=500,
    factor_vae_num_eval=250,
    factor_vae_num_variance=2_000,
    dci_num_train=2_000,
    dci_num_test=1_000,
    dci_n_estimators=20,
    sap_num_train=2_000,
    sap_num_test=1_000,
    tc_num_samples=2_000,
    tc_num_components=20_000,
    iw_num_samples=100,
    iw_num_images=200,
)
#: The priors study's default: disentanglement_lib's points and votes, with DCI's boosting cut to 20 stages and
#: the importance-weighted log-likelihood on 200 images of 200 samples, so that the final measurement costs
#: about a tenth of a 30,000-step run on a CPU (``benchmarks/bench_measurement.py``); the report gives each
#: number's standard error.
STUDY = FULL.replace(dci_n_estimators=20, iw_num_images=200, iw_num_samples=200)
#: Settings by name, as the command line uses them (``--quick`` is ``fast``).
SETTINGS = {"full": FULL, "fast": FAST}


def get_settings(settings: "str | MetricSettings | None" = None) -> MetricSettings:
    """``settings`` itself, the settings called so in :data:`SETTINGS`, or :data:`FULL` for None."""
    if settings is None:
        return FULL
    if isinstance(settings, MetricSettings):
        return settings
    if isinstance(settings, str) and settings in SETTINGS:
        return SETTINGS[settings]
    raise ValueError(f"settings={settings!r}: expected a MetricSettings or one of {tuple(SETTINGS)}")
