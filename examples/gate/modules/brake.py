"""A saturating braking command: proportional to speed, relaxed with distance, within [0, 1]."""


def brake(speed: Real, dist: Real) -> Real:
    u = 0.8 * speed - 0.1 * dist
    return min(max(u, 0.0), 1.0)
