"""A 1-D braking vehicle, one 0.1 s step: gap to the obstacle, speed, brake command."""


def step(dist: Real, speed: Real, u: Real) -> tuple[Real, Real]:
    brake = clip(u, 0.0, 1.0)  # full braking is 8 m/s^2
    new_speed = max(speed - 0.8 * brake, 0.0)
    new_dist = dist - 0.1 * speed
    return (new_dist, new_speed)
