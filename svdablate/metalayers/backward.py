"""The eigendecomposition ("svd") family: eigh forward, one registered backward rule per method.

Forward (ICCV'21 eq. 4): P = U Λ Uᵀ by ``torch.linalg.eigh`` in ``precision`` (float64 by default),
eigenvalues floored at ``eps`` (default: machine epsilon of that precision, as the official code),
Q = U f(Λ) Uᵀ with f(λ) = λ^{1/2} (``sqrtm``) or λ^{-1/2} (``inv_sqrtm``); cast back to P's dtype.

Backward (eqs. 5-7), written directly in ∂l/∂Q = G: with Ĝ = Uᵀ sym(G) U, ∂l/∂U = 2 sym(G) U F
and ∂l/∂Λ = F' diag(Ĝ), the symmetrised eq. 5 reads

    ∂l/∂P = U ( Ĝ ∘ (K ∘ f_i + Kᵀ ∘ f_j) + diag(f'(λ) ∘ diag Ĝ) ) Uᵀ,

which for an antisymmetric K is the Loewner (Daleckii-Krein) form Ĝ_ij K_ij (f_i − f_j). The
backward is therefore ∂l/∂P = U (L ∘ sym Ĝ) Uᵀ with one symmetric matrix L, which for the exact
rule is the Loewner matrix of first divided differences of f (:func:`spectral_backward`: four
batched matmuls and two elementwise passes), and a rule only says how L is built:

* a *K rule* returns K from the eigenvalues; L = K ∘ f_i + Kᵀ ∘ f_j, diagonal f'(λ)
  (:func:`loewner_from_k`). With ``exact=True`` (K = 1/(λ_i − λ_j)) L is the closed-form
  divided difference of f = λ^{±1/2}, which needs no K, no cancellation and no tie handling
  (:func:`power_loewner`);
* a *series rule* returns an approximant g(x) of 1/(1−x), x = λ_small/λ_large, i.e.
  K_ij = ±g(x)/λ_large as the official code; then L = g(x)(1−x) (f_i − f_j)/(λ_i − λ_j) off
  ties, 2g(1) f/λ at ties, f'(λ) on the diagonal (:func:`series_loewner`);
* an *iteration rule* computes ∂l/∂P itself.

Registering any of them is one decorator line::

    @series_rule("svd-taylor", aliases=("SVD-Taylor",))
    def _taylor(x, *, degree: int = 100): ...

Its keyword-only parameters become the method's options. Failure checks: one reduction,
``math.isfinite(float(x.sum(dtype=float64)))``, per forward and per backward call, i.e. one device
sync each (a sum is non-finite iff an entry is; only a float64 overflow of the sum itself could
raise a false alarm); a non-finite value or ``torch.linalg.LinAlgError`` raises
:class:`MetaLayerFailure`. Backward rules are once-differentiable (no double backward).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import krules
from ._registry import MetaLayerFailure, register_method

__all__ = [
    "iteration_rule",
    "k_rule",
    "loewner_from_k",
    "newton_schulz",
    "power_loewner",
    "series_loewner",
    "series_rule",
    "spectral_backward",
]

_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "double": torch.float64,
    "float": torch.float32,
}


def compute_dtype(precision: Any, input_dtype: torch.dtype) -> torch.dtype:
    """The dtype named by ``precision`` (None or "input": the input's dtype)."""
    if precision is None or precision == "input":
        return input_dtype
    if isinstance(precision, torch.dtype) and precision in (torch.float32, torch.float64):
        return precision
    if isinstance(precision, str) and precision.lower() in _DTYPES:
        return _DTYPES[precision.lower()]
    raise ValueError(f"precision must be 'float64', 'float32' or None, got {precision!r}")


def check_finite(x: Tensor, what: str) -> None:
    """Raise MetaLayerFailure if ``x`` has a non-finite entry: one reduction, one device sync."""
    if not math.isfinite(float(x.detach().sum(dtype=torch.float64))):
        raise MetaLayerFailure(f"non-finite values in the meta-layer {what}")


def eigh(a: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` with LinAlgError mapped to MetaLayerFailure."""
    try:
        return torch.linalg.eigh(a)
    except torch.linalg.LinAlgError as exc:  # pragma: no cover - LAPACK dependent
        raise MetaLayerFailure(f"eigendecomposition failed: {exc}") from exc


@dataclass(frozen=True)
class SpectralState:
    """What an iteration rule gets: eigh factors (ascending, floored), compute-dtype input."""

    p: Tensor  # (B, d, d) input in the compute dtype
    u: Tensor  # (B, d, d) eigenvectors, columns in ascending eigenvalue order
    lam: Tensor  # (B, d) eigenvalues after the floor (and any spectrum transform)
    f: Tensor  # (B, d) f(lam)
    power: float  # +0.5 (sqrtm) or -0.5 (inv_sqrtm)


@dataclass(frozen=True)
class _Rule:
    name: str
    kind: str  # "k", "series" or "iteration"
    fn: Callable[..., Tensor]
    spectrum: Callable[..., Tensor] | None
    opt_names: frozenset[str]
    spectrum_opt_names: frozenset[str]
    validate: Callable[..., None] | None = None
    exact: bool = False

    def k_matrix(self, lam: Tensor, **opts: Any) -> Tensor:
        """The rule's K of the paper for eigenvalues ``lam`` (analyses and tests)."""
        if self.kind == "series":
            return krules.series_k(lam, lambda x: self.fn(x, **opts))
        if self.kind == "k":
            return self.fn(lam, **opts)
        raise ValueError(f"{self.name!r} is an iteration rule: it has no K matrix")

    def loewner(self, lam: Tensor, f: Tensor, power: float, opts: dict[str, Any]) -> Tensor:
        """The symmetric L of :func:`spectral_backward` for this rule."""
        if self.exact:
            return power_loewner(lam, f, power)
        kw = {k: opts[k] for k in self.opt_names}
        if self.kind == "series":
            return series_loewner(lam, f, power, lambda x: self.fn(x, **kw))
        return loewner_from_k(self.fn(lam, **kw), lam, f, power)


RULES: dict[str, _Rule] = {}


def _power(lam: Tensor, power: float) -> Tensor:
    return lam.sqrt() if power > 0 else lam.rsqrt()


class _SpectralFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, p: Tensor, power: float, rule: _Rule, kw: dict, cdt: torch.dtype, eps: float
    ) -> Tensor:
        a = p if p.dtype == cdt else p.to(cdt)
        lam, u = eigh(a)
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
    rule: _Rule = ctx.rule
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


def spectral_backward(u: Tensor, loewner: Tensor, g: Tensor) -> Tensor:
    """∂l/∂P = U (L ∘ sym(Uᵀ G U)) Uᵀ for a symmetric L (ICCV'21 eqs. 5-7, Daleckii-Krein).

    Four batched matmuls (the ½ of sym rides on the second one's alpha) and two elementwise
    passes, in two fresh buffers: at the GCP size a fresh 16 MiB buffer costs as much as an
    elementwise pass (page faults). ``loewner`` (fresh) is overwritten.
    """
    ut = u.mT
    a = torch.bmm(ut, g)
    m = torch.baddbmm(a, a, u, beta=0.0, alpha=0.5)  # ½ Uᵀ G U
    loewner.mul_(torch.add(m, m.mT, out=a))
    torch.bmm(u, loewner, out=m)
    return torch.bmm(m, ut, out=a)


def power_loewner(lam: Tensor, f: Tensor, power: float) -> Tensor:
    """L = (f_i − f_j)/(λ_i − λ_j) for f = λ^{±1/2}, f'(λ) at ties (Daleckii-Krein, eq. 5).

    Closed forms without cancellation: 1/(√λ_i + √λ_j) for the square root and
    −1/(√λ_i √λ_j (√λ_i + √λ_j)) for the inverse square root; their diagonal is f'(λ), so the
    exact rule's backward is the Fréchet derivative of f at U max(Λ, eps) Uᵀ, repeated
    eigenvalues included. Exactly symmetric (every product and sum is formed symmetrically).
    """
    if power == 0.5:
        return (f.unsqueeze(-1) + f.unsqueeze(-2)).reciprocal_()
    if power == -0.5:
        root = lam.sqrt()
        t = root.unsqueeze(-1) + root.unsqueeze(-2)
        return t.mul_(root.unsqueeze(-1) * root.neg().unsqueeze(-2)).reciprocal_()
    raise ValueError(f"power must be 0.5 or -0.5, got {power!r}")


def loewner_from_k(k: Tensor, lam: Tensor, f: Tensor, power: float) -> Tensor:
    """L = K ∘ f_i + Kᵀ ∘ f_j off the diagonal, f'(λ) on it (eqs. 5-7 with ∂l/∂U, ∂l/∂Λ).

    ``k`` (fresh) is overwritten. For an antisymmetric K this is K_ij (f_i − f_j).
    """
    t = k.mul_(f.unsqueeze(-1))  # K_ij f_i
    out = t + t.mT
    out.diagonal(dim1=-2, dim2=-1).copy_(power * f / lam)
    return out


def series_loewner(lam: Tensor, f: Tensor, power: float, g: Callable[[Tensor], Tensor]) -> Tensor:
    """L of the series rule K_ij = ±g(x)/λ_large, x = λ_small/λ_large (ICCV'21 eqs. 14-21).

    Off ties K_ij f_i + K_ji f_j = g(x)(1 − x)·(f_i − f_j)/(λ_i − λ_j), which reuses the
    cancellation-free :func:`power_loewner`; at ties (x = 1, the official K_ij = K_ji = g(1)/λ)
    it is 2g(1) f/λ = (2/p)·g(1)·f'(λ) with f = λ^p; the diagonal is f'(λ). All of it runs once
    per unordered pair (:func:`krules.symmetric_map`).
    """
    li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
    x = torch.minimum(li, lj).div_(torch.maximum(li, lj))

    def pairs(x: Tensor, loewner: Tensor) -> Tensor:
        weight = torch.rsub(x, 1.0).masked_fill_(x == 1.0, 2.0 / power)
        return g(x).mul_(loewner).mul_(weight)

    out = krules.symmetric_map(pairs, x, power_loewner(lam, f, power))
    out.diagonal(dim1=-2, dim2=-1).copy_(power * f / lam)
    return out


def _kwonly(fn: Callable[..., Any]) -> frozenset[str]:
    import inspect

    return frozenset(
        n
        for n, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def _spectral_impl(rule: _Rule) -> Callable[..., Tensor]:
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
) -> None:
    rule = _Rule(
        name,
        kind,
        fn,
        spectrum,
        _kwonly(fn),
        _kwonly(spectrum) if spectrum is not None else frozenset(),
        validate,
        exact,
    )
    sources = (fn,) if spectrum is None else (fn, spectrum)
    register_method(
        name,
        family="svd",
        aliases=aliases,
        impl=_spectral_impl(rule),
        option_sources=sources,
        doc=(fn.__doc__ or "").strip(),
    )
    RULES[name] = rule  # only once the method is registered: a rejected rule leaves nothing


def k_rule(
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    spectrum: Callable[..., Tensor] | None = None,
    validate: Callable[..., None] | None = None,
    exact: bool = False,
) -> Callable:
    """Register ``fn(lam, **opts) -> K`` as method ``name`` (eigh forward, K-matrix backward).

    ``spectrum(lam, eps, **opts)`` optionally changes the forward's eigenvalues (Top-N);
    ``validate(**opts)`` runs at forward time, so bad options fail before any backward;
    ``exact`` declares K = 1/(λ_i − λ_j): the backward then uses the closed-form divided
    difference of f (:func:`power_loewner`), with the limit f'(λ) at equal eigenvalues.
    """

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        _register(name, "k", fn, aliases, spectrum, validate, exact)
        return fn

    return deco


def series_rule(
    name: str, *, aliases: tuple[str, ...] = (), validate: Callable[..., None] | None = None
) -> Callable:
    """Register ``g(x, **opts)`` ≈ 1/(1−x) as method ``name``: K_ij = ±g(x)/λ_large (eq. 14).

    x = λ_small/λ_large ∈ (0, 1] elementwise; g returns a new tensor; g(1) must be finite (the
    official tie value).
    """

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        _register(name, "series", fn, aliases, None, validate)
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


def _positive_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_iters(iters: int) -> None:
    _positive_int("iters", iters, 1)


def _check_degree(degree: int) -> None:
    _positive_int("degree", degree, 0)


def _check_pade(degree: int) -> None:
    _positive_int("degree", degree, 2)
    krules.pade_value_at_one(degree // 2, degree - degree // 2)  # computes and caches


def _check_threshold(threshold: float) -> None:
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold must be > 0, got {threshold!r}")


# ----------------------------------------------------------------------------- K rules


@k_rule("svd", aliases=("MPN-COV", "SVD", "eig", "exact"), exact=True)
def _svd(lam: Tensor) -> Tensor:
    """Exact K_ij = 1/(λ_i − λ_j) (ICCV'21 eq. 5; MPN-COV)."""
    return krules.exact_k(lam)


def top_n_spectrum(lam: Tensor, eps: float, *, keep: int | None = None) -> Tensor:
    """Keep the ``keep`` largest eigenvalues, set the others to eps (ICCV'21 eq. 11).

    Default ``keep`` = d − 50 as the official code (at least 1).
    """
    d = lam.shape[-1]
    n = max(d - 50, 1) if keep is None else int(keep)
    if not 1 <= n <= d:
        raise ValueError(f"keep must be in [1, {d}], got {keep!r}")
    if n == d:
        return lam
    out = lam.clone()
    out[..., : d - n] = eps  # ascending order: the first d - n are the smallest
    return out


@k_rule("svd-topn", aliases=("SVD-TopN", "TopN"), spectrum=top_n_spectrum, exact=True)
def _svd_topn(lam: Tensor) -> Tensor:
    """Exact K on the Top-N spectrum (ICCV'21 eqs. 5, 11)."""
    return krules.exact_k(lam)


@k_rule("svd-trunc", aliases=("SVD-Trunc", "Trunc"), validate=_check_threshold)
def _svd_trunc(lam: Tensor, *, threshold: float = 1e10) -> Tensor:
    """K_ij = 1/(λ_i − λ_j) clipped to ±T (ICCV'21 eq. 12)."""
    return krules.truncated_k(lam, threshold)


@series_rule("svd-taylor", aliases=("SVD-Taylor", "Taylor"), validate=_check_degree)
def _svd_taylor(x: Tensor, *, degree: int = 100) -> Tensor:
    """K from the degree-K Taylor series of 1/(1−x) (ICCV'21 eq. 16)."""
    return krules.taylor_series(x, degree)


@series_rule("svd-pade", aliases=("SVD-Padé", "SVD-Pade", "Pade", "Padé"), validate=_check_pade)
def _svd_pade(x: Tensor, *, degree: int = 100) -> Tensor:
    """K from the official [degree/2 / degree/2] Padé approximant of 1/(1−x) (ICCV'21 eq. 21)."""
    return krules.pade_series(x, degree)


# ------------------------------------------------------------------------ iteration rules


def newton_schulz(p: Tensor, power: float, iters: int) -> Tensor:
    """Coupled Newton-Schulz, trace pre-normalisation and post-compensation (ICCV'21 eqs. 7-9).

    A = P/tr(P), Y₀ = A, Z₀ = I, T = ½(3I − Z Y), Y ← Y T, Z ← T Z; returns √tr(P)·Y_N
    (power +½) or Z_N/√tr(P) (power −½). Differentiable by autograd.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters!r}")
    tr = p.diagonal(dim1=-2, dim2=-1).sum(-1).unsqueeze(-1).unsqueeze(-1)
    a = p / tr
    eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
    eye15 = (1.5 * eye).expand_as(p)
    t = eye15 - 0.5 * a  # Z₀ = I
    y = torch.matmul(a, t) if (power > 0 or iters > 1) else None
    z = t
    for k in range(1, iters):
        last = k == iters - 1
        t = torch.baddbmm(eye15, z, y, alpha=-0.5)
        if power > 0:
            y = torch.matmul(y, t)
            if not last:
                z = torch.matmul(t, z)
        else:
            z = torch.matmul(t, z)
            if not last:
                y = torch.matmul(y, t)
    s = tr.sqrt()
    return y * s if power > 0 else z / s


@iteration_rule("svd-newton", aliases=("SVD-Newton", "Newton"), validate=_check_iters)
def _svd_newton(state: SpectralState, grad: Tensor, *, iters: int = 10) -> Tensor:
    """Backprop through ``iters`` Newton-Schulz iterations on P (ICCV'21 §3.3, eqs. 7-10)."""
    with torch.enable_grad():
        p = state.p.detach().requires_grad_(True)
        out = newton_schulz(p, state.power, iters)
        (gp,) = torch.autograd.grad(out, p, grad)
    return 0.5 * (gp + gp.mT)


@iteration_rule("svd-pi", aliases=("SVD-PI", "PI", "power-iteration"), validate=_check_iters)
def _svd_pi(state: SpectralState, grad: Tensor, *, iters: int = 20) -> Tensor:
    """Power-iteration gradient with deflation (Wang et al. NeurIPS'19; ICCV'21 eq. 13).

    Eigenvectors v_1..v_d in descending order are taken as ``iters`` power iterations
    v ← M_k v/‖M_k v‖ started at the eigh eigenvector, on the deflated
    M_k = P − Σ_{j<k} λ_j v_j v_jᵀ with λ_k = v_kᵀ M_k v_k. Backpropagating that unrolled graph
    at its fixed point has a closed form, used here (it equals autograd through the literal loop,
    see the tests): in the eigenbasis, with Ĝ = Uᵀ sym(G) U,
    W_jk = 2Ĝ_jk τ_jk (f_k − λ_k f_j/λ_j) for λ_j below λ_k, where
    τ_jk = (1/λ_k) Σ_{s<iters} (λ_j/λ_k)^s is the Taylor form of 1/(λ_k − λ_j);
    W_jk = 2Ĝ_jk f_k/λ_k for λ_j above λ_k (the deflated directions); diagonal f'(λ_k) Ĝ_kk;
    ∂l/∂P = U sym(W) Uᵀ. The official code instead multiplies by (I − V Vᵀ) with the full V,
    which is ≈ 0, so it passes no gradient through the eigenvectors; that is not reproduced.
    """
    u, lam, f = state.u, state.lam, state.f
    gh = torch.matmul(torch.matmul(u.mT, grad), u)
    gh = gh + gh.mT  # 2 sym(Ĝ)
    d = lam.shape[-1]
    # ascending order: index j < k means λ_j ≤ λ_k, i.e. j is computed *after* k (below k)
    lj = lam.unsqueeze(-1)  # rows j
    lk = lam.unsqueeze(-2)  # columns k
    below = torch.ones(d, d, dtype=torch.bool, device=lam.device).triu(1)  # row j < column k
    x = (lj / lk).clamp_max(1.0)
    tau = krules.geometric_sum(x, iters) / lk
    fj_over = (f / lam).unsqueeze(-1)  # f_j/λ_j on rows
    w_below = tau * (f.unsqueeze(-2) - lk * fj_over)
    w_above = (f / lam).unsqueeze(-2).expand_as(w_below)
    w = torch.where(below, w_below, w_above).mul_(gh)
    w = 0.5 * (w + w.mT)
    fprime = state.power * f / lam
    w.diagonal(dim1=-2, dim2=-1).copy_(fprime * 0.5 * gh.diagonal(dim1=-2, dim2=-1))
    return torch.matmul(torch.matmul(u, w), u.mT)
