"""svdablate.metalayers: matrix square roots of SPD batches, their backward rules, the nn.Modules.

Public API (contract in docs/internals.md)::

    sqrtm(P, method="svd", **opts), inv_sqrtm(P, method="svd", **opts)
    METHODS, resolve_method(name), MetaLayerFailure
    covariance(X), spectrum_stats(P, ridge=None)
    ZCAWhitening, CovariancePooling       (the meta-layers as modules: dbn, gcp)

Methods: ``svd svd-topn svd-trunc svd-pi svd-newton svd-taylor svd-pade ns mpa-lya mpa-lya-inv``
(ICCV'21 Tables 2-7 and Song et al. ICLR'22; ``mpa-lya`` as the released ECCV'22 DBN code runs
it); the papers' names are aliases (``resolve_method``).

Layout: ``registry.py`` (methods, options, failure contract) · ``api.py`` (the functions above) ·
``spectral.py`` (eigh forward, Loewner backward, the decorators :func:`k_rule` /
:func:`series_rule` / :func:`iteration_rule`) · ``krules.py`` (K builders, Taylor and Padé
approximants) · ``eigen_rules.py`` (the registered K and series rules) · ``iteration_rules.py``
(svd-newton, svd-pi) · ``iterative.py`` (ns, mpa-lya, mpa-lya-inv) · ``modules.py`` (nn.Modules) ·
``analysis.py`` (ICCV'21 Tables 6 and 7). SVD-Padé with the official [50/50] coefficients equals
the exact gradient to float64 round-off, because the Padé table of 1/(1−x) is degenerate (see
``krules.py`` and ``analysis.py``).
"""

from svdablate.metalayers import eigen_rules as _eigen_rules  # noqa: F401  (registers svd, svd-topn/trunc/taylor/pade)
from svdablate.metalayers import iteration_rules as _iteration_rules  # noqa: F401  (registers svd-newton, svd-pi)
from svdablate.metalayers import iterative as _iterative  # noqa: F401  (registers ns, mpa-lya, mpa-lya-inv)
from svdablate.metalayers.api import covariance, inv_sqrtm, spectrum_stats, sqrtm
from svdablate.metalayers.modules import CovariancePooling, ZCAWhitening
from svdablate.metalayers.registry import METHODS, MetaLayerFailure, MethodSpec, resolve_method
from svdablate.metalayers.spectral import iteration_rule, k_rule, series_rule

__all__ = [
    "METHODS",
    "CovariancePooling",
    "MetaLayerFailure",
    "MethodSpec",
    "ZCAWhitening",
    "covariance",
    "inv_sqrtm",
    "iteration_rule",
    "k_rule",
    "resolve_method",
    "series_rule",
    "spectrum_stats",
    "sqrtm",
]
