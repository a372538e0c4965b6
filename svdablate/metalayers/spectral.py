"""Machinery of the eigendecomposition ("svd") family: eigh forward, Loewner backward, decorators.

Forward (ICCV'21 eq. 4): P = U Λ Uᵀ by ``torch.linalg.eigh`` in ``precision`` (float64 by default),
eigenvalues floored at ``eps`` (default: machine epsilon of that precision, as the official code),
Q = U f(Λ) Uᵀ with f(λ) = λ^{1/2} (``sqrtm``) or λ^{-1/2} (``inv_sqrtm``); cast back to P's dtype.

Backward (eqs. 5-7), written directly in ∂l/∂Q = G: with Ĝ = Uᵀ sym(G) U, ∂l/∂U = 2 sym(G) U F
and ∂l/∂Λ = F' diag(Ĝ), the symmetrised eq. 5 reads

    ∂l/∂P = U ( Ĝ ∘ (K ∘ f_i + Kᵀ ∘ f_j) + diag(f'(λ) ∘ diag Ĝ) ) Uᵀ,

which for an antisymmetric K is the Loewner (Daleckii-Krein) form Ĝ_ij K_ij (f_i − f_j). The
backward is therefore ∂l/∂P = U (L ∘ sym Ĝ) Uᵀ with one symmetric matrix L, which for the exact
rule is the Loewner matrix of first divided differences of f (:func:`spectral_backward`: four
batched matmuls and two elementwise passes), and a rule only says how L is built (the builders
and the backward are in :mod:`.loewner`; this module holds the forward, the rules' registry and
their decorators):

* a *K rule* returns K from the eigenvalues; L = K ∘ f_i + Kᵀ ∘ f_j, diagonal f'(λ)
  (:func:`loewner_from_k`). With ``exact=True`` (K = 1/(λ_i − λ_j)) L is the closed-form
  divided difference of f = λ^{±1/2}, which needs no K and no cancellation
  (:func:`power_loewner`);
* a *series rule* returns an approximant g(x) of 1/(1−x), x = λ_small/λ_large, i.e.
  K_ij = ±g(x)/λ_large as the official code; then L = g(x)(1−x) (f_i − f_j)/(λ_i − λ_j) off
  ties, f'(λ) on the diagonal (:func:`series_loewner`);
* an *iteration rule* computes ∂l/∂P itself from the eigh factors (:class:`SpectralState`).

Ties (λ_i = λ_j, i ≠ j: every rank-deficient covariance has many, floored at eps) are where the
rules part, so each K and series rule names what it does there (``ties``, :data:`TIES`):
``"limit"``, the Loewner limit f'(λ) (the Fréchet derivative: ``svd``, and ``svd-pade``, whose
approximant equals 1/(1−x) to round-off below x = 1 but is arbitrary at it); ``"own"``, the rule's
own K or g(1)/λ (``svd-taylor``: (K+1)/λ; ``svd-trunc``: +T); ``"largest-k"``, the official code's
overflow check, which replaces the +inf of 1/(λ_i − λ_j) by the largest finite K of the whole batch
(``svd-topn``, whose forward sets the N-smallest eigenvalues to eps and so ties them).

Registering any of them is one decorator line (the rules themselves: ``eigen_rules.py`` and
``iteration_rules.py``)::

    @series_rule("svd-taylor", aliases=("SVD-Taylor",))
    def _taylor(x, *, degree: int = 100): ...

Its keyword-only parameters become the method's options. Failure checks
(:func:`registry.check_finite`): one per forward and one per backward call; a non-finite value or
``torch.linalg.LinAlgError`` raises :class:`MetaLayerFailure`. Backward rules are
once-differentiable (no double backward).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from svdablate.metalayers import krules
from svdablate.metalayers.loewner import (
    largest_finite_k,
    largest_k_at_ties,
    loewner_from_k,
    power_loewner,
    series_loewner,
    spectral_backward,
)
from svdablate.metalayers.registry import (
    MetaLayerFailure,
    check_finite,
    compute_dtype,
    keyword_only,
    register_method,
)

__all__ = [
    "RULES",
    "TIES",
    "Rule",
    "SpectralState",
    "iteration_rule",
    "k_rule",
    "largest_finite_k",
    "largest_k_at_ties",
    "loewner_from_k",
    "power_loewner",
    "series_loewner",
    "series_rule",
    "spectral_backward",
]


#: Where the eigendecomposition runs (option ``eigh_device``): ``same`` (where P is) or ``cpu``
#: (the official ICCV'21 code's choice, "SVD is faster on CPU"; :mod:`eigh_placement` measures).
EIGH_DEVICES = ("same", "cpu")


def eigh(a: Tensor, where: str = "same") -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` of ``a`` where ``where`` says, the factors back on ``a``'s device;
    LinAlgError mapped to MetaLayerFailure."""
    if where not in EIGH_DEVICES:
        raise ValueError(f"eigh_device must be one of {', '.join(EIGH_DEVICES)}, got {where!r}")
    moved = where == "cpu" and a.device.type != "cpu"
    try:
        lam, u = torch.linalg.eigh(a.cpu() if moved else a)
    except torch.linalg.LinAlgError as exc:  # pragma: no cover - LAPACK dependent
        raise MetaLayerFailure(f"eigendecomposition failed: {exc}") from exc
    if moved:
        lam, u = lam.to(a.device, non_blocking=True), u.to(a.device, non_blocking=True)
    return lam, u


@dataclass(frozen=True)
class SpectralState:
    """What an iteration rule gets: eigh factors (ascending, floored), compute-dtype input."""

    p: Tensor  # (B, d, d) input in the compute dtype
    u: Tensor  # (B, d, d) eigenvectors, columns in ascending eigenvalue order
    lam: Tensor  # (B, d) eigenvalues after the floor (and any spectrum transform)
    f: Tensor  # (B, d) f(lam)
    power: float  # +0.5 (sqrtm) or -0.5 (inv_sqrtm)


#: What a rule's L is at equal eigenvalues λ_i = λ_j, i ≠ j (see the module docstring).
TIES = {
    "limit": "the Loewner limit f'(λ), the Fréchet derivative",
    "own": "the rule's own K (g(1)/λ for a series rule)",
    "largest-k": "the batch's largest finite K, as the official code's overflow check",
}


@dataclass(frozen=True)
class Rule:
    """A registered backward rule: its kind, its function and the options each part takes."""

    name: str
    kind: str  # "k", "series" or "iteration"
    fn: Callable[..., Tensor]
    spectrum: Callable[..., Tensor] | None
    opt_names: frozenset[str]
    spectrum_opt_names: frozenset[str]
    validate: Callable[..., None] | None = None
    exact: bool = False
    ties: str = "own"

    def k_matrix(self, lam: Tensor, **opts: Any) -> Tensor:
        """The rule's K of the paper for eigenvalues ``lam`` (analyses and tests)."""
        if self.kind == "series":
            return krules.series_k(lam, lambda x: self.fn(x, **opts))
        if self.kind == "k":
            return self.fn(lam, **opts)
        raise ValueError(f"{self.name!r} is an iteration rule: it has no K matrix")

    def loewner(self, lam: Tensor, f: Tensor, power: float, opts: dict[str, Any]) -> Tensor:
        """The symmetric L of :func:`spectral_backward` for this rule, ties as ``self.ties``."""
        kw = {k: opts[k] for k in self.opt_names}
        if self.exact:
            out = power_loewner(lam, f, power)
        elif self.kind == "series":
            g = functools.partial(self.fn, **kw)
            out = series_loewner(lam, f, power, g, limit_at_ties=self.ties == "limit")
        else:
            out = loewner_from_k(self.fn(lam, **kw), lam, f, power)
        if self.ties == "largest-k":
            out = largest_k_at_ties(out, lam, f)
        return out


RULES: dict[str, Rule] = {}


def _power(lam: Tensor, power: float) -> Tensor:
    return lam.sqrt() if power > 0 else lam.rsqrt()


class _SpectralFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, p: Tensor, power: float, rule: Rule, kw: dict, cdt: torch.dtype, eps: float
    ) -> Tensor:
        a = p if p.dtype == cdt else p.to(cdt)
        lam, u = eigh(a, kw["eigh_device"])
        lam = lam.clamp_min_(eps)
        if rule.spectrum is not None:
            lam = rule.spectrum(lam, eps, **{k: kw[k] for k in rule.spectrum_opt_names})
        f = _power(lam, power)
        q = torch.bmm(u * f.unsqueeze(-2), u.mT)
        if q.dtype != p.dtype:
            q = q.to(p.dtype)
        check_finite(q, "forward")
        ctx.rule, ctx.kw, ctx.power = rule, kw, power
        ctx.save_for_backward(a if rule.kind == "iteration" else None, u, lam, f)
        return q

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: a second backward raises, as documented
            return _spectral_grad_once(ctx, grad)
        return _spectral_grad(ctx, grad)  # the usual case, without once_differentiable's wrapper


def _spectral_grad(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    a, u, lam, f = ctx.saved_tensors
    rule: Rule = ctx.rule
    g = grad if grad.dtype == u.dtype else grad.to(u.dtype)
    if rule.kind == "iteration":
        kw = {k: ctx.kw[k] for k in rule.opt_names}
        gp = rule.fn(SpectralState(a, u, lam, f, ctx.power), g, **kw)
    else:
        gp = spectral_backward(u, rule.loewner(lam, f, ctx.power, ctx.kw), g)
    if gp.dtype != grad.dtype:
        gp = gp.to(grad.dtype)
    check_finite(gp, "backward")
    return gp, None, None, None, None, None


_spectral_grad_once = once_differentiable(_spectral_grad)


def _spectral_impl(rule: Rule) -> Callable[..., Tensor]:
    def impl(p: Tensor, power: float, opts: dict[str, Any]) -> Tensor:
        cdt = compute_dtype(opts["precision"], p.dtype)
        eps = opts["eps"]
        eps = float(torch.finfo(cdt).eps) if eps is None else float(eps)
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        if rule.validate is not None:
            rule.validate(**{k: opts[k] for k in rule.opt_names})
        return _SpectralFunction.apply(p, power, rule, opts, cdt, eps)

    return impl


def _register(
    name: str,
    kind: str,
    fn: Callable[..., Tensor],
    aliases: tuple[str, ...],
    spectrum: Callable[..., Tensor] | None,
    validate: Callable[..., None] | None,
    exact: bool = False,
    ties: str = "own",
) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    if exact and ties == "own":
        ties = "limit"  # the closed-form divided difference is f'(λ) at equal eigenvalues
    if ties == "limit" and kind == "k" and not exact:
        raise ValueError("ties='limit' needs exact=True for a K rule (its K is the rule's own)")
    rule = Rule(
        name,
        kind,
        fn,
        spectrum,
        frozenset(keyword_only(fn)),
        frozenset(keyword_only(spectrum)) if spectrum is not None else frozenset(),
        validate,
        exact,
        ties,
    )
    sources = (fn,) if spectrum is None else (fn, spectrum)
    register_method(
        name,
        family="svd",
        aliases=aliases,
        impl=_spectral_impl(rule),
        option_sources=sources,
    )
    RULES[name] = rule  # only once the method is registered: a rejected rule leaves nothing


def k_rule(
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    spectrum: Callable[..., Tensor] | None = None,
    validate: Callable[..., None] | None = None,
    exact: bool = False,
    ties: str = "own",
) -> Callable:
    """Register ``fn(lam, **opts) -> K`` as method ``name`` (eigh forward, K-matrix backward).

    ``spectrum(lam, eps, **opts)`` optionally changes the forward's eigenvalues (Top-N);
    ``validate(**opts)`` runs at forward time, so bad options fail before any backward;
    ``exact`` declares K = 1/(λ_i − λ_j): the backward then uses the closed-form divided
    difference of f (:func:`power_loewner`), with the limit f'(λ) at equal eigenvalues unless
    ``ties`` (:data:`TIES`) says otherwise.
    """

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        _register(name, "k", fn, aliases, spectrum, validate, exact, ties)
        return fn

    return deco


def series_rule(
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    validate: Callable[..., None] | None = None,
    ties: str = "own",
) -> Callable:
    """Register ``g(x, **opts)`` ≈ 1/(1−x) as method ``name``: K_ij = ±g(x)/λ_large (eq. 14).

    x = λ_small/λ_large ∈ (0, 1] elementwise; g returns a new tensor; g(1) must be finite. At
    ties L is 2g(1)f/λ (``ties="own"``, the official value) or f'(λ) (``ties="limit"``).
    """

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        _register(name, "series", fn, aliases, None, validate, ties=ties)
        return fn

    return deco


def iteration_rule(
    name: str, *, aliases: tuple[str, ...] = (), validate: Callable[..., None] | None = None
) -> Callable:
    """Register ``fn(state, grad_Q, **opts) -> grad_P`` as method ``name`` (eigh forward)."""

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        _register(name, "iteration", fn, aliases, None, validate)
        return fn

    return deco
