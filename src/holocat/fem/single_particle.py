r"""Single-particle model: Li diffusion in a sphere under constant surface flux, and its stresses.

Equations (SCIENCE.md §7), radial coordinate :math:`r \in [0, R]`:

.. math::

    \frac{\partial c}{\partial t} = \frac{D}{r^2} \frac{\partial}{\partial r}
        \left( r^2 \frac{\partial c}{\partial r} \right), \qquad
    D \frac{\partial c}{\partial r}\Big|_{r=R} = F_0, \qquad
    \frac{\partial c}{\partial r}\Big|_{r=0} = 0, \qquad c(r, 0) = c_0,

with :math:`F_0 > 0` for Li flowing *into* the particle (insertion, discharge of the cathode).
Weak form with the spherical weight :math:`r^2` (the :math:`4\pi` cancels): find :math:`c` such that
for every test function :math:`v`

.. math::

    \int_0^R r^2 \dot c \, v \, dr + \int_0^R D r^2 c' v' \, dr = R^2 F_0 \, v(R).

Discretisation: P1 elements on a mesh graded toward the surface,
:math:`r_i = R\,[1 - (1 - i/N)^p]`, consistent (default) or lumped mass matrix, both integrated
exactly (3-point Gauss); implicit Euler or variable-step BDF2 (default; Euler for the first step).
The first output interval is graded in time (:math:`t \propto s^2`) to follow the
:math:`\sqrt{t}` boundary layer of the switched-on flux; later intervals use equal steps.
Both schemes keep the discrete mass balance :math:`\int c\,dV = c_0 V + 4\pi R^2 F_0 t` to
round-off because the stiffness matrix annihilates constants and the load is constant.
Internally lengths are in µm and times in s (D in µm² s⁻¹).

Stresses, one-way coupling (Cheng & Verbrugge, J. Power Sources 190, 453 (2009)), free sphere,
stress-free at :math:`c_0`, with :math:`I(r) = r^{-3}\int_0^r c\,x^2\,dx`:

.. math::

    \sigma_r = \frac{2\Omega E}{3(1-\nu)} [I(R) - I(r)], \qquad
    \sigma_t = \frac{\Omega E}{3(1-\nu)} [2 I(R) + I(r) - c(r)],

so :math:`\sigma_r(R) = 0`, :math:`\sigma_t(R) = \frac{\Omega E}{3(1-\nu)}(\bar c - c(R))`
(compressive at the surface during insertion) and :math:`\sigma_r(0) = \sigma_t(0)`.
Stresses in MPa, positive in tension.
"""

from __future__ import annotations

import logging
import math
from numbers import Integral, Real
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.linalg import SuperLU, splu

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["single_particle", "plot_single_particle"]

logger = logging.getLogger(__name__)

#: metres to micrometres
_M_TO_UM = 1e6
#: 3-point Gauss-Legendre rule on [0, 1] (exact for polynomials up to degree 5)
_GAUSS_XI = 0.5 + 0.5 * np.array([-math.sqrt(3.0 / 5.0), 0.0, math.sqrt(3.0 / 5.0)])
_GAUSS_W = 0.5 * np.array([5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0])

OUTPUT_COLUMNS = ("r_um", "t_s", "c_mol_m3", "sigma_r_MPa", "sigma_t_MPa")


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a real number; got {type(value).__name__} {value!r}")
    x = float(value)
    bad = not math.isfinite(x) or (x < 0 if allow_zero else x <= 0)
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}; got {value!r}")
    return x


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}; got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}; got {value!r}")
    return int(value)


def _mesh(radius_um: float, n_elements: int, grading: float) -> NDArray[np.float64]:
    """Node radii in µm, graded toward the surface (grading = 1: uniform)."""
    s = np.linspace(0.0, 1.0, n_elements + 1)
    r = radius_um * (1.0 - (1.0 - s) ** grading)
    r[0], r[-1] = 0.0, radius_um
    return r


def _element_moments(r: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per element, ∫ x² φ_a dx for the left (a = 0) and right (a = 1) P1 shape function."""
    h = np.diff(r)
    x = r[:-1, None] + h[:, None] * _GAUSS_XI[None, :]
    wx2 = _GAUSS_W[None, :] * h[:, None] * x**2
    return wx2 @ (1.0 - _GAUSS_XI), wx2 @ _GAUSS_XI


def _assemble(
    r: NDArray[np.float64], diffusivity_um2_s: float, mass: Literal["consistent", "lumped"]
) -> tuple[sp.csc_matrix, sp.csc_matrix]:
    """Mass and stiffness matrices of the r²-weighted P1 problem (sparse, CSC)."""
    n_nodes = r.size
    h = np.diff(r)
    x = r[:-1, None] + h[:, None] * _GAUSS_XI[None, :]
    wx2 = _GAUSS_W[None, :] * h[:, None] * x**2  # (n_el, n_q)
    phi = np.stack([1.0 - _GAUSS_XI, _GAUSS_XI])  # (2, n_q)
    m_local = np.einsum("eq,aq,bq->eab", wx2, phi, phi)
    r2_int = (r[1:] ** 3 - r[:-1] ** 3) / 3.0
    k_el = diffusivity_um2_s * r2_int / h**2
    k_local = k_el[:, None, None] * np.array([[1.0, -1.0], [-1.0, 1.0]])[None]
    nodes = np.stack([np.arange(n_nodes - 1), np.arange(1, n_nodes)], axis=1)
    rows = np.repeat(nodes, 2, axis=1).ravel()
    cols = np.tile(nodes, (1, 2)).ravel()
    m_mat = sp.coo_matrix((m_local.ravel(), (rows, cols)), shape=(n_nodes, n_nodes)).tocsc()
    k_mat = sp.coo_matrix((k_local.ravel(), (rows, cols)), shape=(n_nodes, n_nodes)).tocsc()
    if mass == "lumped":
        m_mat = sp.diags(np.asarray(m_mat.sum(axis=1)).ravel()).tocsc()
    return m_mat, k_mat


def _time_steps(t_end_s: float, n_out: int, dt_s: float) -> tuple[NDArray[np.float64], NDArray]:
    """Step sizes and, for each output time, the index of the step that ends on it."""
    interval = t_end_s / n_out
    m = max(1, math.ceil(interval / dt_s - 1e-9))
    n_first = 2 * m
    t_first = interval * (np.arange(n_first + 1) / n_first) ** 2
    steps = [np.diff(t_first)]
    steps += [np.full(m, interval / m)] * (n_out - 1)
    dts = np.concatenate(steps)
    ends = n_first - 1 + m * np.arange(n_out)
    return dts, ends


def _cumulative_moment(
    c: NDArray[np.float64], m0: NDArray[np.float64], m1: NDArray[np.float64]
) -> NDArray[np.float64]:
    """∫_0^{r_i} c x² dx at every node for P1 fields c of shape (n_times, n_nodes)."""
    per_element = c[:, :-1] * m0[None, :] + c[:, 1:] * m1[None, :]
    out = np.zeros_like(c)
    out[:, 1:] = np.cumsum(per_element, axis=1)
    return out


def _stresses_MPa(
    r_um: NDArray[np.float64],
    u: NDArray[np.float64],
    m0: NDArray[np.float64],
    m1: NDArray[np.float64],
    *,
    youngs_modulus_GPa: float,
    poisson_ratio: float,
    partial_molar_volume_m3_mol: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cheng–Verbrugge radial and hoop stress (MPa) of the concentration rise u = c − c0."""
    moment = _cumulative_moment(u, m0, m1)
    integral_mean = np.empty_like(u)  # I(r) = r⁻³ ∫_0^r u x² dx
    integral_mean[:, 1:] = moment[:, 1:] / r_um[None, 1:] ** 3
    integral_mean[:, 0] = u[:, 0] / 3.0  # r → 0 limit
    i_surface = integral_mean[:, -1:]
    prefactor_MPa = (
        partial_molar_volume_m3_mol * youngs_modulus_GPa * 1e3 / (3.0 * (1.0 - poisson_ratio))
    )
    sigma_r = 2.0 * prefactor_MPa * (i_surface - integral_mean)
    sigma_t = prefactor_MPa * (2.0 * i_surface + integral_mean - u)
    sigma_r[:, -1] = 0.0  # exact traction-free surface (removes round-off)
    return sigma_r, sigma_t


def single_particle(
    *,
    radius_um: float,
    diffusivity_m2_s: float,
    flux_mol_m2_s: float,
    t_end_s: float,
    n_out: int = 50,
    c0_mol_m3: float = 0.0,
    youngs_modulus_GPa: float = 140.0,
    poisson_ratio: float = 0.3,
    partial_molar_volume_m3_mol: float = 1.4e-6,
    c_max_mol_m3: float | None = None,
    n_elements: int = 100,
    dt_s: float | None = None,
    mass: Literal["consistent", "lumped"] = "consistent",
    time_scheme: Literal["bdf2", "euler"] = "bdf2",
    mesh_grading: float = 1.5,
) -> pd.DataFrame:
    """Li concentration and stresses in a spherical particle under a constant surface flux.

    Finite elements in the radial coordinate (see the module docstring for the weak form and
    the Cheng–Verbrugge stresses). One-way coupling: stress does not drive diffusion.

    Parameters
    ----------
    radius_um : float
        Particle radius R in µm; > 0.
    diffusivity_m2_s : float
        Li diffusivity D in m² s⁻¹; > 0 (NMC: 2e-14).
    flux_mol_m2_s : float
        Constant surface flux F0 in mol m⁻² s⁻¹, positive for Li flowing into the particle.
    t_end_s : float
        Simulated time in s; > 0.
    n_out : int
        Number of output times t_k = k t_end / n_out, k = 1 … n_out; >= 1.
    c0_mol_m3 : float
        Initial (stress-free) concentration in mol m⁻³; >= 0.
    youngs_modulus_GPa, poisson_ratio : float
        Elastic constants of the particle (E > 0 in GPa; -1 < ν < 0.5).
    partial_molar_volume_m3_mol : float
        Partial molar volume Ω in m³ mol⁻¹; >= 0 (chemical strain (Ω/3)(c − c0)).
    c_max_mol_m3 : float or None
        Maximum (saturation) concentration in mol m⁻³, > c0. Only checked: a warning is
        logged when the solution leaves [0, c_max], and the first output time at which that
        happens is recorded in ``attrs["t_out_of_range_s"]``.
    n_elements : int
        Number of P1 elements; >= 2.
    dt_s : float or None
        Maximum time step h in s; default min(t_end / (10 n_out), R² / (200 D)). Each output
        interval Δ = t_end / n_out is cut into m = ceil(Δ / h) equal steps, except the first,
        which takes 2m steps graded as t = Δ (k / 2m)² (smallest step Δ / (4m²)) to resolve
        the √t start.
    mass : {"consistent", "lumped"}
        Mass matrix.
    time_scheme : {"bdf2", "euler"}
        Variable-step BDF2 (second order) or implicit Euler (first order).
    mesh_grading : float
        Grading exponent p >= 1 of the nodes r_i = R [1 − (1 − i/N)^p]; 1 is uniform.

    Returns
    -------
    pandas.DataFrame
        Long form, ``n_out × (n_elements + 1)`` rows ordered by time, then radius; columns
        ``r_um, t_s, c_mol_m3, sigma_r_MPa, sigma_t_MPa``. ``attrs`` holds the material
        constants (``youngs_modulus_GPa``, ``poisson_ratio``, ``partial_molar_volume_m3_mol``,
        ``diffusivity_m2_s``, ``flux_mol_m2_s``, ``radius_um``, ``c0_mol_m3``, ``c_max_mol_m3``)
        and the numerical settings.

    Raises
    ------
    ValueError
        Radius, diffusivity, t_end, E or dt_s not > 0; n_out < 1; n_elements < 2; ν outside
        (-1, 0.5); Ω or c0 negative; c_max not > c0; unknown ``mass`` or ``time_scheme``;
        non-finite flux.
    TypeError
        A non-numeric parameter.

    Examples
    --------
    >>> df = single_particle(radius_um=5.0, diffusivity_m2_s=2e-14, flux_mol_m2_s=8.2e-5,
    ...                      t_end_s=720.0, n_out=4, n_elements=40)
    >>> sorted(df["t_s"].unique().tolist())
    [180.0, 360.0, 540.0, 720.0]
    >>> bool((df["sigma_t_MPa"][df["r_um"] == 5.0] < 0).all())  # compressive surface
    True
    """
    radius_um = _check_positive("radius_um", radius_um)
    diffusivity_m2_s = _check_positive("diffusivity_m2_s", diffusivity_m2_s)
    t_end_s = _check_positive("t_end_s", t_end_s)
    n_out = _check_int("n_out", n_out, 1)
    n_elements = _check_int("n_elements", n_elements, 2)
    if isinstance(flux_mol_m2_s, bool) or not isinstance(flux_mol_m2_s, Real):
        raise TypeError(f"flux_mol_m2_s: expected a real number; got {flux_mol_m2_s!r}")
    flux_mol_m2_s = float(flux_mol_m2_s)
    if not math.isfinite(flux_mol_m2_s):
        raise ValueError(f"flux_mol_m2_s: expected a finite flux; got {flux_mol_m2_s!r}")
    c0_mol_m3 = _check_positive("c0_mol_m3", c0_mol_m3, allow_zero=True)
    youngs_modulus_GPa = _check_positive("youngs_modulus_GPa", youngs_modulus_GPa)
    omega = _check_positive(
        "partial_molar_volume_m3_mol", partial_molar_volume_m3_mol, allow_zero=True
    )
    if isinstance(poisson_ratio, bool) or not isinstance(poisson_ratio, Real):
        raise TypeError(f"poisson_ratio: expected a real number; got {poisson_ratio!r}")
    poisson_ratio = float(poisson_ratio)
    if not -1.0 < poisson_ratio < 0.5:
        raise ValueError(f"poisson_ratio: expected -1 < nu < 0.5; got {poisson_ratio!r}")
    if c_max_mol_m3 is not None:
        c_max_mol_m3 = _check_positive("c_max_mol_m3", c_max_mol_m3)
        if c_max_mol_m3 <= c0_mol_m3:
            raise ValueError(
                f"c_max_mol_m3: expected > c0_mol_m3 = {c0_mol_m3}; got {c_max_mol_m3!r}"
            )
    if mass not in ("consistent", "lumped"):
        raise ValueError(f"mass: expected 'consistent' or 'lumped'; got {mass!r}")
    if time_scheme not in ("bdf2", "euler"):
        raise ValueError(f"time_scheme: expected 'bdf2' or 'euler'; got {time_scheme!r}")
    mesh_grading = _check_positive("mesh_grading", mesh_grading)
    if mesh_grading < 1.0:
        raise ValueError(f"mesh_grading: expected >= 1 (1 = uniform); got {mesh_grading!r}")

    diffusivity_um2_s = diffusivity_m2_s * _M_TO_UM**2
    flux_um = flux_mol_m2_s * _M_TO_UM  # mol m⁻³ µm s⁻¹
    tau_s = radius_um**2 / diffusivity_um2_s
    if dt_s is None:
        dt_s = min(t_end_s / (10 * n_out), tau_s / 200.0)
    else:
        dt_s = _check_positive("dt_s", dt_s)

    r_um = _mesh(radius_um, n_elements, mesh_grading)
    m_mat, k_mat = _assemble(r_um, diffusivity_um2_s, mass)
    load = np.zeros(r_um.size)
    load[-1] = radius_um**2 * flux_um
    dts, ends = _time_steps(t_end_s, n_out, dt_s)
    logger.info(
        "single_particle: R=%g um, D=%g m2/s (tau_D=%g s), flux=%g mol/m2/s, t_end=%g s, "
        "%d P1 elements (grading %g, %s mass), %d %s steps (dt %.3g..%.3g s)",
        radius_um,
        diffusivity_m2_s,
        tau_s,
        flux_mol_m2_s,
        t_end_s,
        n_elements,
        mesh_grading,
        mass,
        dts.size,
        time_scheme,
        dts.min(),
        dts.max(),
    )

    # march the rise u = c - c0 (avoids cancellation against a large c0)
    u_prev = np.zeros(r_um.size)
    u_now = np.zeros(r_um.size)
    u_out = np.empty((n_out, r_um.size))
    solvers: dict[tuple[float, float], SuperLU] = {}
    out_index = 0
    for step, dt in enumerate(dts):
        if time_scheme == "euler" or step == 0:
            a0, rhs_hist = 1.0, m_mat @ u_now
        else:
            omega_ratio = dt / dts[step - 1]
            a0 = (1.0 + 2.0 * omega_ratio) / (1.0 + omega_ratio)
            a1 = 1.0 + omega_ratio
            a2 = omega_ratio**2 / (1.0 + omega_ratio)
            rhs_hist = m_mat @ (a1 * u_now - a2 * u_prev)
        key = (round(a0, 12), round(float(dt), 12))
        solver = solvers.get(key)
        if solver is None:
            solver = splu((a0 * m_mat + dt * k_mat).tocsc())
            solvers[key] = solver
        u_next = solver.solve(rhs_hist + dt * load)
        u_prev, u_now = u_now, u_next
        if out_index < n_out and step == ends[out_index]:
            u_out[out_index] = u_now
            out_index += 1

    m0, m1 = _element_moments(r_um)
    sigma_r, sigma_t = _stresses_MPa(
        r_um,
        u_out,
        m0,
        m1,
        youngs_modulus_GPa=youngs_modulus_GPa,
        poisson_ratio=poisson_ratio,
        partial_molar_volume_m3_mol=omega,
    )
    c_out = c0_mol_m3 + u_out
    t_out = t_end_s * np.arange(1, n_out + 1) / n_out

    t_out_of_range = None
    upper = np.inf if c_max_mol_m3 is None else c_max_mol_m3
    outside = (c_out < 0.0) | (c_out > upper)
    if outside.any():
        t_out_of_range = float(t_out[np.argmax(outside.any(axis=1))])
        logger.warning(
            "single_particle: concentration leaves [0, %s] mol/m3 from t = %g s "
            "(min %g, max %g): the constant-flux model no longer holds there",
            upper,
            t_out_of_range,
            c_out.min(),
            c_out.max(),
        )

    df = pd.DataFrame(
        {
            "r_um": np.tile(r_um, n_out),
            "t_s": np.repeat(t_out, r_um.size),
            "c_mol_m3": c_out.ravel(),
            "sigma_r_MPa": sigma_r.ravel(),
            "sigma_t_MPa": sigma_t.ravel(),
        }
    )
    df.attrs.update(
        {
            "model": "single_particle (Crank constant flux; Cheng-Verbrugge one-way stresses)",
            "radius_um": radius_um,
            "diffusivity_m2_s": diffusivity_m2_s,
            "flux_mol_m2_s": flux_mol_m2_s,
            "t_end_s": t_end_s,
            "c0_mol_m3": c0_mol_m3,
            "c_max_mol_m3": c_max_mol_m3,
            "youngs_modulus_GPa": youngs_modulus_GPa,
            "poisson_ratio": poisson_ratio,
            "partial_molar_volume_m3_mol": omega,
            "diffusion_time_s": tau_s,
            "n_out": n_out,
            "n_elements": n_elements,
            "element": "P1",
            "mass": mass,
            "time_scheme": time_scheme,
            "mesh_grading": mesh_grading,
            "n_steps": int(dts.size),
            "dt_min_s": float(dts.min()),
            "dt_max_s": float(dts.max()),
            "t_out_of_range_s": t_out_of_range,
        }
    )
    return df


def plot_single_particle(df: pd.DataFrame, *, n_profiles: int = 5) -> Figure:
    """Concentration profiles c(r) at a few times and the surface hoop stress against time.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`single_particle` (columns ``r_um, t_s, c_mol_m3, sigma_t_MPa``).
    n_profiles : int
        Number of output times drawn as profiles (evenly spread, last time included); >= 1.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: c(r) in mol m⁻³ against r in µm, and σ_t(R) in MPa against t in s.
        Drawn on an Agg canvas; the caller saves it.

    Raises
    ------
    TypeError
        ``df`` is not a DataFrame.
    ValueError
        Missing columns, empty table or n_profiles < 1.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a pandas.DataFrame; got {type(df).__name__}")
    missing = [c for c in ("r_um", "t_s", "c_mol_m3", "sigma_t_MPa") if c not in df.columns]
    if missing or df.empty:
        raise ValueError(
            f"df: expected the non-empty output of single_particle; missing columns {missing}, "
            f"{len(df)} rows"
        )
    n_profiles = _check_int("n_profiles", n_profiles, 1)

    times = np.sort(df["t_s"].unique())
    picks = np.unique(np.linspace(0, times.size - 1, min(n_profiles, times.size)).round())
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_c, ax_s = fig.subplots(1, 2)
    for i in picks.astype(int):
        rows = df[df["t_s"] == times[i]].sort_values("r_um")
        ax_c.plot(rows["r_um"], rows["c_mol_m3"], label=f"t = {times[i]:.4g} s")
    ax_c.set_xlabel("r (µm)")
    ax_c.set_ylabel("c (mol m⁻³)")
    ax_c.legend(fontsize="small")
    r_surface = df["r_um"].max()
    surface = df[df["r_um"] == r_surface].sort_values("t_s")
    ax_s.plot(surface["t_s"], surface["sigma_t_MPa"], marker=".")
    ax_s.axhline(0.0, color="0.5", lw=0.8)
    ax_s.set_xlabel("t (s)")
    ax_s.set_ylabel("surface hoop stress σ_t(R) (MPa)")
    return fig
