"""X-ray optics shared by the simulator and the tomography engine.

Conventions (SCIENCE.md §1–2): SI metres throughout; object transmission
``T = exp(-i*phi - B)`` with ``phi = k * int(delta dz) >= 0`` for matter and
``B = k * int(beta dz)``; Fresnel propagator in Fourier space
``P_z(f) = exp(-i*pi*lambda*z*|f|^2)`` with ``f = fftfreq(n, d=pixel)`` in cycles per metre.

Cone-beam geometry from the KB focus (Fresnel scaling theorem): for a focus-to-sample
distance ``z1`` and a focus-to-detector distance ``D`` the image is a plane-wave hologram at
``z_eff = z1 (D - z1) / D`` magnified by ``M = D / z1``; the effective pixel in the sample
plane is ``p_det / M``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HC_KEV_M",
    "CLASSICAL_ELECTRON_RADIUS_M",
    "wavelength_m",
    "DistanceGeometry",
    "distance_geometry",
    "fresnel_number",
    "fresnel_kernel",
    "fresnel_propagate",
    "electron_density_per_A3",
    "contrast_delta_beta",
]

#: h*c in keV * m: lambda[m] = HC_KEV_M / E[keV]
HC_KEV_M = 1.239841984e-9
#: classical electron radius r_e in metres
CLASSICAL_ELECTRON_RADIUS_M = 2.8179403262e-15


def wavelength_m(energy_keV: float) -> float:
    """X-ray wavelength in metres for a photon energy in keV (> 0)."""
    energy_keV = float(energy_keV)
    if not np.isfinite(energy_keV) or energy_keV <= 0:
        raise ValueError(f"energy_keV: expected a finite photon energy > 0 keV; got {energy_keV!r}")
    return HC_KEV_M / energy_keV


@dataclass(frozen=True)
class DistanceGeometry:
    """Plane-wave-equivalent geometry of one focus-to-sample distance.

    Attributes
    ----------
    focus_to_sample_m, focus_to_detector_m : float
        z1 and D in metres.
    magnification : float
        M = D / z1.
    effective_pixel_size_m : float
        Pixel size in the sample plane, p_det / M, in metres.
    effective_distance_m : float
        z_eff = z1 (D - z1) / D in metres.
    """

    focus_to_sample_m: float
    focus_to_detector_m: float
    magnification: float
    effective_pixel_size_m: float
    effective_distance_m: float


def distance_geometry(
    *,
    detector_pixel_size_m: float,
    focus_to_detector_m: float,
    focus_to_sample_m,
) -> list[DistanceGeometry]:
    """Magnification, effective pixel and effective distance for each focus-to-sample distance.

    Parameters
    ----------
    detector_pixel_size_m : float
        Detector pixel size in metres; > 0.
    focus_to_detector_m : float
        Focus-to-detector distance D in metres; > every focus-to-sample distance.
    focus_to_sample_m : float or sequence of float
        Focus-to-sample distance(s) z1 in metres; 0 < z1 < D.

    Returns
    -------
    list of DistanceGeometry, one per distance, in the given order.

    Examples
    --------
    >>> g = distance_geometry(detector_pixel_size_m=3e-6, focus_to_detector_m=1.2,
    ...                       focus_to_sample_m=[0.12])[0]
    >>> round(g.magnification, 6), round(g.effective_pixel_size_m * 1e9, 3)
    (10.0, 300.0)
    >>> round(g.effective_distance_m, 6)
    0.108
    """
    p = float(detector_pixel_size_m)
    d = float(focus_to_detector_m)
    z1 = np.atleast_1d(np.asarray(focus_to_sample_m, dtype=float))
    if not np.isfinite(p) or p <= 0:
        raise ValueError(f"detector_pixel_size_m: expected a pixel size > 0 m; got {p!r}")
    if not np.isfinite(d) or d <= 0:
        raise ValueError(f"focus_to_detector_m: expected a distance > 0 m; got {d!r}")
    if z1.ndim != 1 or z1.size == 0:
        raise ValueError(
            f"focus_to_sample_m: expected one or more distances; got {focus_to_sample_m!r}"
        )
    if not np.all(np.isfinite(z1)) or np.any(z1 <= 0) or np.any(z1 >= d):
        raise ValueError(
            "focus_to_sample_m: expected every distance in (0, focus_to_detector_m="
            f"{d}) m; got {z1.tolist()}"
        )
    out = []
    for zi in z1:
        m = d / zi
        out.append(
            DistanceGeometry(
                focus_to_sample_m=float(zi),
                focus_to_detector_m=d,
                magnification=float(m),
                effective_pixel_size_m=float(p / m),
                effective_distance_m=float(zi * (d - zi) / d),
            )
        )
    return out


def fresnel_number(*, pixel_size_m: float, distance_m: float, energy_keV: float) -> float:
    """Fresnel number N_F = p^2 / (lambda z) of one pixel."""
    return float(pixel_size_m) ** 2 / (wavelength_m(energy_keV) * float(distance_m))


def fresnel_kernel(
    shape: tuple[int, int], *, pixel_size_m: float, distance_m: float, energy_keV: float
) -> NDArray[np.complex128]:
    """Fourier-space Fresnel propagator exp(-i pi lambda z |f|^2) on an ``fft2`` grid of ``shape``."""
    lam = wavelength_m(energy_keV)
    fy = np.fft.fftfreq(shape[0], d=pixel_size_m)
    fx = np.fft.fftfreq(shape[1], d=pixel_size_m)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    return np.exp(-1j * np.pi * lam * float(distance_m) * f2)


def fresnel_propagate(
    wave: NDArray,
    *,
    pixel_size_m: float,
    distance_m: float,
    energy_keV: float,
    pad: int | None = None,
) -> NDArray[np.complex128]:
    """Propagate a complex 2D wave field (..., ny, nx) by ``distance_m`` in free space.

    The field is padded with its edge values (``pad`` pixels per side; default ny//2, nx//2,
    i.e. twice the size) before the transfer-function propagation and cropped afterwards.
    Propagation by 0 m is the identity; |wave|^2 summed over the padded grid is conserved.
    """
    wave = np.asarray(wave)
    if wave.ndim < 2:
        raise ValueError(f"wave: expected (..., ny, nx); got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("wave: contains NaN or inf")
    if float(distance_m) == 0.0:
        return wave.astype(np.complex128, copy=True)
    ny, nx = wave.shape[-2:]
    py, px = (ny // 2, nx // 2) if pad is None else (int(pad), int(pad))
    widths = [(0, 0)] * (wave.ndim - 2) + [(py, py), (px, px)]
    padded = np.pad(wave.astype(np.complex128), widths, mode="edge")
    kernel = fresnel_kernel(
        padded.shape[-2:], pixel_size_m=pixel_size_m, distance_m=distance_m, energy_keV=energy_keV
    )
    out = np.fft.ifft2(np.fft.fft2(padded) * kernel)
    return out[..., py : py + ny, px : px + nx]


def electron_density_per_A3(delta, energy_keV: float):
    """Electron density in e/Å^3 from the refractive index decrement: n_e = 2 pi delta / (r_e lambda^2)."""
    lam = wavelength_m(energy_keV)
    return 2 * np.pi * np.asarray(delta) / (CLASSICAL_ELECTRON_RADIUS_M * lam**2) * 1e-30


def contrast_delta_beta(
    delta_particle: float, beta_particle: float, delta_matrix: float, beta_matrix: float
) -> float:
    """delta/beta of the contrast between particles and the matrix they are embedded in.

    Single-material phase retrieval (Paganin, the homogeneous-object CTF, the Fresnel fit of
    :func:`holocat.tomo.refine_phase`) ties the absorption to the phase, ``B = phi / (delta /
    beta)``. Inside a composite the holograms are formed by the *differences* from the
    surrounding medium, so the ratio to use is that of the differences (Beltran et al., Opt.
    Express 18, 6423 (2010)):

        (delta_p - delta_m) / (beta_p - beta_m)

    The matrix's own, nearly absorption-free phase then contributes only a smooth background.
    NMC811 in a matrix of half carbon-binder, half electrolyte at 17 keV: 27.0 (NMC alone
    40.6); see ``config/README.md``.

    Parameters
    ----------
    delta_particle, beta_particle : float
        Refractive index decrement and absorption index of the particles; >= 0.
    delta_matrix, beta_matrix : float
        The same for the embedding matrix (volume average of its phases); >= 0.

    Returns
    -------
    float
        The contrast delta/beta, > 0.

    Raises
    ------
    ValueError
        If a value is negative or not finite, or the particles do not exceed the matrix in
        both delta and beta (no positive contrast ratio exists).

    Examples
    --------
    >>> round(contrast_delta_beta(3.29e-6, 8.11e-8, 0.0, 0.0), 1)  # in vacuum: the material's own
    40.6
    >>> round(contrast_delta_beta(3.29e-6, 8.11e-8, 1.124e-6, 8.2e-10), 1)
    27.0
    """
    values = {
        "delta_particle": delta_particle,
        "beta_particle": beta_particle,
        "delta_matrix": delta_matrix,
        "beta_matrix": beta_matrix,
    }
    for name, value in values.items():
        try:
            ok = np.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name}: expected a finite number >= 0; got {value!r}")
    d = float(delta_particle) - float(delta_matrix)
    b = float(beta_particle) - float(beta_matrix)
    if d <= 0 or b <= 0:
        raise ValueError(
            "contrast_delta_beta: the particles must exceed the matrix in both delta and beta; "
            f"got delta {delta_particle!r} vs {delta_matrix!r}, beta {beta_particle!r} vs "
            f"{beta_matrix!r}"
        )
    return d / b
