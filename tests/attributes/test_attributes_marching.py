"""Mesh-free marching-cubes areas (``holocat.attributes._marching``) against their oracles.

Oracles: planes through a box (exact), the level-0.5 surface of a Gaussian-smoothed ball
(analytic radius), and ``skimage.measure.marching_cubes(allow_degenerate=True)`` + the sum of its
triangle areas. Relative differences to skimage measured on these fields: smoothed balls
r = 5-20 and the ellipsoid within 1.3e-5, the cracked ball 3.0e-5 (quadrilaterals and longer
loops are fanned over other diagonals than Lewiner's tables); gaussian-filtered noise at its
mean level (17-90 ambiguous faces) -2.4e-4 to -5.4e-4 (the same on strongly non-planar
loops; the cubes with ambiguous faces account for at most 8.3e-5). ``mc_area_change``
against skimage's masked pair: 8.9e-5 (crack) and 5.3e-5 (pores) of the area change.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy import ndimage as ndi
from skimage.measure import marching_cubes

from holocat.attributes._marching import _loop_table, mc_area, mc_area_change

#: skimage agreement on smoothed masks (measured <= 3.0e-5) and on smooth noise (<= 5.4e-4)
MASK_RTOL = 5e-5
NOISE_RTOL = 7e-4
#: mc_area_change vs skimage's masked pair, relative to the change (measured <= 8.9e-5)
CHANGE_RTOL = 1.5e-4


def _skimage_area(field, level=0.5, mask=None):
    """Sum of skimage's marching-cubes triangle areas (float64)."""
    verts, faces, _, _ = marching_cubes(field, level=level, allow_degenerate=True, mask=mask)
    verts = verts.astype(np.float64)
    u = verts[faces[:, 1]] - verts[faces[:, 0]]
    w = verts[faces[:, 2]] - verts[faces[:, 0]]
    return 0.5 * float(np.linalg.norm(np.cross(u, w), axis=1).sum())


def _ball(shape, centre, radius):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def _smooth(mask, sigma=1.0):
    return ndi.gaussian_filter(mask.astype(np.float32), sigma, mode="constant")


def _off_centre_ball(radius):
    n = 2 * radius + 8
    return _ball((n, n, n), (n / 2 - 0.3, n / 2 + 0.2, n / 2 + 0.45), radius)


def _smoothed_ball_radius(radius, sigma=1.0):
    """Radius of the level-0.5 surface of a continuous ball of ``radius`` * Gaussian(sigma).

    The smoothed indicator at distance rho from the centre is the radial integral
    int_0^R s / (rho sigma sqrt(2 pi)) [exp(-(s - rho)^2 / 2 sigma^2) - exp(-(s + rho)^2 /
    2 sigma^2)] ds (the 3D Gaussian's mass inside the ball).
    """

    def value(rho):
        def integrand(s):
            a = math.exp(-((s - rho) ** 2) / (2 * sigma**2))
            b = math.exp(-((s + rho) ** 2) / (2 * sigma**2))
            return s / (rho * sigma * math.sqrt(2 * math.pi)) * (a - b)

        return integrate.quad(integrand, 0.0, radius, epsabs=1e-13)[0]

    return optimize.brentq(lambda rho: value(rho) - 0.5, radius - 3 * sigma, radius, xtol=1e-12)


def _n_ambiguous_faces(inside):
    """Number of cube faces (all three orientations) whose corners alternate in and out."""
    count = 0
    for axis in range(3):
        planes = np.moveaxis(inside, axis, 0)
        a, b = planes[:, :-1, :-1], planes[:, :-1, 1:]
        c, d = planes[:, 1:, 1:], planes[:, 1:, :-1]
        count += int(np.count_nonzero((a == c) & (b == d) & (a != b)))
    return count


def _noise(seed, sigma, n=48):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.standard_normal((n, n, n)).astype(np.float32), sigma)


def _cracked_ball():
    """Filled ball (r = 18 in 48^3) and a tilted planar crack slab inside it."""
    shape = (48, 48, 48)
    centre = (23.6, 24.2, 23.9)
    filled = _ball(shape, centre, 18)
    z, y, x = np.ogrid[:48, :48, :48]
    slab = np.abs(z - 24 + 0.3 * (x - 24)) < 1.2
    disc = (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= 14**2
    return filled, filled & slab & disc


def _pores():
    """The same filled ball and six small seeded ball-shaped voids inside it."""
    filled, _ = _cracked_ball()
    rng = np.random.default_rng(3)
    pores = np.zeros_like(filled)
    for _ in range(6):
        pores |= _ball(filled.shape, rng.uniform(12, 36, 3), rng.uniform(1.5, 3.0))
    return filled, pores & filled


# --------------------------------------------------------------------------------------------
# analytic surfaces
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slopes", "level"),
    [((0.0, 0.0), 4.3), ((0.25, -0.1), 5.17), ((-0.31, 0.22), 6.05), ((0.6, 0.45), 1.3)],
)
def test_plane_area_is_exact(slopes, level):
    # f = z - a y - b x: the level set is the plane z = level + a y + b x, which crosses every
    # (y, x) column of the box [0, 15] x [0, 12] x [0, 13] inside it: area = 12 * 13 * |n|
    a, b = slopes
    z, y, x = np.meshgrid(np.arange(16.0), np.arange(13.0), np.arange(14.0), indexing="ij")
    field = z - a * y - b * x
    assert np.all(field[0] < level) and np.all(field[-1] > level)
    expected = 12 * 13 * math.sqrt(1 + a * a + b * b)
    assert mc_area(field, level) == pytest.approx(expected, rel=1e-6)
    # the same plane with inside and outside swapped, and along the other axes
    assert mc_area(-field, -level) == pytest.approx(expected, rel=1e-6)
    assert mc_area(field.transpose(2, 0, 1), level) == pytest.approx(expected, rel=1e-6)
    assert mc_area(field.astype(np.float32), level) == pytest.approx(expected, rel=1e-5)


def test_tilted_plane_leaving_through_the_sides_is_exact():
    # f = x + y + z at level 9.5 in a 8^3 box: the plane x + y + z = 9.5 clipped to [0, 7]^3
    # is a hexagon; its area = sqrt(3) * (area of its projection onto the (y, x) plane), the
    # square minus the two corner triangles where z would leave the box
    n, level = 8, 9.5
    z, y, x = np.meshgrid(*(np.arange(float(n)),) * 3, indexing="ij")
    field = x + y + z
    side = n - 1
    # projection: {(y, x) in [0, 7]^2 : 0 <= 9.5 - x - y <= 7}
    lower_cut = (level - side) ** 2 / 2  # x + y < 2.5
    upper_cut = (2 * side - level) ** 2 / 2  # x + y > 9.5
    expected = math.sqrt(3) * (side * side - lower_cut - upper_cut)
    assert mc_area(field, level) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("radius", [5, 8, 12, 20])
def test_smoothed_ball_area_against_analytic_surface(radius):
    # the level-0.5 surface of the smoothed ball lies inside the ball (rho < r: 4 pi r^2 is
    # 9.2 %, 3.2 %, 1.3 %, 0.28 % too large for r = 5, 8, 12, 20); against the smoothed
    # continuous ball the digital ball and faceting leave -1.28 %, -0.07 %, +0.10 %, +0.22 %,
    # the same (to 1.2e-5) as skimage: both must meet the tolerance
    field = _smooth(_off_centre_ball(radius))
    expected = 4 * math.pi * _smoothed_ball_radius(radius) ** 2
    tolerance = 0.015 if radius < 8 else 0.003
    assert abs(_skimage_area(field) / expected - 1) <= tolerance
    assert abs(mc_area(field) / expected - 1) <= tolerance


# --------------------------------------------------------------------------------------------
# against skimage
# --------------------------------------------------------------------------------------------


def _ellipsoid():
    z, y, x = np.ogrid[:48, :48, :48]
    inside = ((z - 23.6) / 18) ** 2 + ((y - 24.2) / 11) ** 2 + ((x - 23.9) / 8) ** 2 <= 1
    return _smooth(inside)


@pytest.mark.parametrize(
    "make_field",
    [
        lambda: _smooth(_off_centre_ball(5)),
        lambda: _smooth(_off_centre_ball(8)),
        lambda: _smooth(_off_centre_ball(12)),
        lambda: _smooth(_off_centre_ball(20)),
        _ellipsoid,
        lambda: _smooth(np.logical_xor(*_cracked_ball())),  # the solid: filled minus crack
    ],
    ids=["ball5", "ball8", "ball12", "ball20", "ellipsoid", "cracked"],
)
def test_smoothed_masks_match_skimage(make_field):
    field = make_field()
    assert mc_area(field) == pytest.approx(_skimage_area(field), rel=MASK_RTOL)


@pytest.mark.parametrize(("seed", "sigma"), [(1, 2.0), (2, 3.0), (3, 2.5)])
def test_smooth_noise_matches_skimage(seed, sigma):
    field = _noise(seed, sigma)
    level = float(field.mean())
    assert _n_ambiguous_faces(field > level) >= 10  # saddles of the smooth noise
    assert mc_area(field, level) == pytest.approx(_skimage_area(field, level), rel=NOISE_RTOL)


def test_ambiguous_faces_decide_as_skimage():
    # z-extruded 2D white noise: every loop is a planar vertical rectangle (exact fans) and
    # skimage's interior tests have nothing to join, so only the asymptotic decider on the
    # ambiguous (z) faces separates the two areas: they must agree to rounding
    rng = np.random.default_rng(11)
    plane = rng.standard_normal((40, 40))
    field = np.broadcast_to(plane, (5, 40, 40)).astype(np.float32)  # skimage's dtype
    level = 0.05
    assert _n_ambiguous_faces(field > level) > 500
    assert mc_area(field, level) == pytest.approx(_skimage_area(field, level), rel=1e-6)


@pytest.mark.parametrize(
    ("c", "length"),
    [
        (0.5, math.sqrt(8) / 3 + math.sqrt(2) / 3),  # saddle at the level: outside corners joined
        (0.49, None),  # saddle below the level: outside corners joined
        (0.51, None),  # saddle above the level: inside corners joined
    ],
)
def test_asymptotic_decider_on_one_face(c, length):
    # one cube, constant along z; its (y, x) face has a = 2 at (0, 0), b = -1 at (0, 1),
    # c at (1, 1), d = -1 at (1, 0), level 0: the saddle (a c - b d) / (a + c - b - d) is above
    # the level iff a c > b d = 1. The crossings are (0, 2/3) and (2/3, 0) next to a, (t, 1)
    # and (1, t) next to c with t = 1 / (1 + c); the segments cut off a and c (outside corners
    # joined) or b and d (inside corners joined); the area is their length times 1
    face = np.array([[2.0, -1.0], [-1.0, c]])
    field = np.broadcast_to(face, (2, 2, 2)).copy()
    t = 1.0 / (1.0 + c)
    near_a = math.hypot(2 / 3, 2 / 3)
    near_c = math.hypot(1 - t, 1 - t)
    near_b = math.hypot(t, 1 / 3)  # (0, 2/3) to (t, 1)
    near_d = math.hypot(1 / 3, t)  # (2/3, 0) to (1, t)
    joined_outside = near_a + near_c
    joined_inside = near_b + near_d
    expected = joined_inside if 2.0 * c > 1.0 else joined_outside
    assert abs(joined_inside - joined_outside) > 0.02  # the choice shows in the area
    assert mc_area(field, 0.0) == pytest.approx(expected, rel=1e-12)
    if length is not None:
        assert expected == pytest.approx(length, rel=1e-12)


def test_loop_table_covers_every_crossing_once():
    # every row of the table: its loops hold each crossing edge of the case exactly once, and
    # every loop closes over at least 3 crossings
    tables = _loop_table()
    rows = 0
    for case in range(1, 255):
        inside = [(case >> corner) & 1 for corner in range(8)]
        crossing = {e for e, (a, b) in enumerate(tables.edge_corners) if inside[a] != inside[b]}
        ambiguous = int(tables.ambiguous[case])
        for choice in range(64):
            if choice & ~ambiguous:
                continue
            sizes = tables.loop_sizes[case * 64 + choice]
            edges = tables.loop_edges[case * 64 + choice, : sizes.sum()]
            assert sorted(edges.tolist()) == sorted(crossing)
            assert np.all(sizes[sizes > 0] >= 3)
            rows += 1
    assert rows == 654  # 254 cases, 120 of them with ambiguous faces


def test_complement_has_the_same_area():
    # -f at -level swaps inside and outside; the decider's choice flips with it, so the loops
    # and crossings are the same: equal to rounding
    field = _noise(4, 1.5, n=40).astype(np.float64)
    assert mc_area(-field, -0.02) == pytest.approx(mc_area(field, 0.02), rel=1e-12)


def test_spacing_scales_the_area_by_its_square():
    field = _smooth(_off_centre_ball(8))
    assert mc_area(field, spacing=2.0) == 4 * mc_area(field)
    assert mc_area(field, spacing=0.37) == pytest.approx(0.37**2 * mc_area(field), rel=1e-14)


# --------------------------------------------------------------------------------------------
# mc_area_change
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_voids", [_cracked_ball, _pores], ids=["crack", "pores"])
def test_area_change_matches_masked_skimage_pair(make_voids):
    filled, voids = make_voids()
    sigma = 1.0
    reach = int(4 * sigma + 0.5)
    field = _smooth(filled, sigma)
    minus = _smooth(voids, sigma)
    near = ndi.maximum_filter(voids.view(np.uint8), size=2 * reach + 3, mode="constant")
    near = near.view(bool)
    expected = _skimage_area(field - minus, mask=near) - _skimage_area(field, mask=near)
    got = mc_area_change(field, minus)
    assert expected > 100  # the voids add wall area
    assert got == pytest.approx(expected, rel=CHANGE_RTOL)


def test_area_change_equals_difference_of_full_areas():
    # cubes with minus == 0 at all corners are identical in both surfaces and cancel exactly
    field = _noise(5, 2.0, n=40)
    level = float(field.mean())
    minus = np.zeros_like(field)
    minus[10:22, 5:30, 12:27] = _noise(6, 1.5, n=40)[10:22, 5:30, 12:27] + 0.1
    got = mc_area_change(field, minus, level)
    expected = mc_area(field - minus, level) - mc_area(field, level)
    assert abs(got) > 10
    assert got == pytest.approx(expected, rel=1e-9)
    assert mc_area_change(field, np.zeros_like(field), level) == 0.0


def test_area_change_float64_and_layouts():
    filled, voids = _pores()
    field = _smooth(filled).astype(np.float64)
    minus = _smooth(voids).astype(np.float64)
    expected = mc_area(field - minus) - mc_area(field)
    assert mc_area_change(field, minus) == pytest.approx(expected, rel=1e-9)
    # non-contiguous views: the same as their contiguous copies (the fans follow the array
    # axes, so a transposed field's area agrees only to the triangulation: 2.3e-5 here)
    field_t, minus_t = field.transpose(2, 1, 0), minus.transpose(2, 1, 0)
    got = mc_area_change(field_t, minus_t)
    assert got == mc_area_change(np.ascontiguousarray(field_t), np.ascontiguousarray(minus_t))
    assert got == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------------------------
# edge cases and errors
# --------------------------------------------------------------------------------------------


def test_no_crossing_gives_zero():
    field = np.full((9, 8, 7), 0.2, dtype=np.float32)
    assert mc_area(field) == 0.0
    assert mc_area(np.ones_like(field)) == 0.0  # all inside: the open box faces do not count
    assert mc_area(np.full_like(field, 0.5)) == 0.0  # at the level counts as outside
    assert mc_area_change(field, np.full_like(field, 0.1)) == 0.0


def test_surface_through_the_array_faces_stays_open():
    # inside in x < 3.5 of a 6 x 7 x 8 box: only the plane x = 3.5 inside the array counts
    field = np.zeros((6, 7, 8), dtype=np.float32)
    field[:, :, :4] = 1.0
    assert mc_area(field) == pytest.approx(5 * 6)
    assert mc_area(field) == pytest.approx(_skimage_area(field), rel=1e-12)


@pytest.mark.parametrize("shape", [(1, 5, 5), (5, 1, 5), (5, 5, 1), (0, 4, 4)])
def test_arrays_thinner_than_two_samples_give_zero(shape):
    field = np.random.default_rng(0).random(shape)
    assert mc_area(field) == 0.0
    assert mc_area_change(field, field) == 0.0


def test_non_contiguous_input_equals_its_contiguous_copy():
    field = _noise(7, 2.0, n=40)
    level = float(field.mean())
    for view in (field[::2, 1:, ::-1], field.transpose(1, 2, 0), np.asfortranarray(field)):
        assert not view.flags.c_contiguous
        assert mc_area(view, level) == mc_area(np.ascontiguousarray(view), level)
    assert mc_area(field.astype(np.float64), level) == pytest.approx(
        mc_area(field, level), rel=1e-12
    )


def test_invalid_input_raises_with_the_parameter_name():
    field = np.zeros((4, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"field, minus: expected the same shape"):
        mc_area_change(field, np.zeros((4, 4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="field: expected a 3D array"):
        mc_area(np.zeros((4, 4)))
    with pytest.raises(TypeError, match="field: expected a floating dtype"):
        mc_area(np.zeros((4, 4, 4), dtype=np.int32))
    with pytest.raises(TypeError, match="minus: expected a numpy array"):
        mc_area_change(field, [[[0.0]]])
    with pytest.raises(ValueError, match="spacing"):
        mc_area(field, spacing=0.0)
    with pytest.raises(ValueError, match="level"):
        mc_area(field, level=math.nan)
    field[1, 1, 1] = 1.0
    field[1, 1, 2] = math.nan  # a corner of cubes the surface crosses
    with pytest.raises(ValueError, match="NaN"):
        mc_area(field)
