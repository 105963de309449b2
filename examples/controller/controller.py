"""A saturating braking controller: brake harder when fast and close, within [0, 1]."""


def controller(speed: Real, dist: Real) -> Real:
    demand = 0.1 * speed - 0.02 * dist + 0.3
    return clip(demand, 0.0, 1.0)
