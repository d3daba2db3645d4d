# The ticker's timing floors (nanoseconds); the tick loop itself has no Python API.
SPIN_BELOW_NS: int
SINGLE_CPU_MIN_TICK_NS: int
TICK_RING: int
