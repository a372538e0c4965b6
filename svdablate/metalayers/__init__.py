"""svdablate.metalayers: matrix square roots of SPD batches and their backward rules (pure torch).

Public API (contract in docs/internals.md)::

    sqrtm(P, method="svd", **opts), inv_sqrtm(P, method="svd", **opts)
    METHODS, resolve_method(name), MetaLayerFailure
    covariance(X), spectrum_stats(P)

Methods: ``svd svd-topn svd-trunc svd-pi svd-newton svd-taylor svd-pade ns mpa-lya`` (ICCV'21
Tables 2-7 and Song et al. ICLR'22); the papers' names are aliases (``resolve_method``). Backward
rules are registered with :func:`k_rule` / :func:`series_rule` / :func:`iteration_rule`
(``backward.py``). SVD-Padé with
the official [50/50] coefficients equals the exact gradient to float64 round-off, because the Padé
table of 1/(1−x) is degenerate (see ``krules.py`` and ``analysis.py``).
"""

from . import iterative as _iterative  # noqa: F401  (registers ns, mpa-lya)
from ._registry import METHODS, MetaLayerFailure, MethodSpec, resolve_method
from .api import covariance, inv_sqrtm, spectrum_stats, sqrtm
from .backward import iteration_rule, k_rule, series_rule

__all__ = [
    "METHODS",
    "MetaLayerFailure",
    "MethodSpec",
    "covariance",
    "inv_sqrtm",
    "iteration_rule",
    "k_rule",
    "resolve_method",
    "series_rule",
    "spectrum_stats",
    "sqrtm",
]
