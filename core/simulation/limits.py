"""Every limit on what a user can hand the lab (scenario JSON, sales-history CSV, command-line values),
in one place. A value outside them is a one-line error naming it (exit code 2 on the command line);
sizes and counts are checked before anything large is read or allocated. Per-field ranges of a
scenario (fractions, lead times, costs) stay next to their fields in ``core.simulation.scenario``.
"""

from __future__ import annotations

MAX_STORES = 50
"""Stores in a scenario, and store columns in a sales history."""

MAX_DAYS = 3660
"""Days in a scenario's horizon, in one run (``--periods``) and in a sales history's date span (ten years)."""

MAX_PROMOTIONS = 50
"""Promotions of one store's demand model."""

MAX_DISRUPTIONS = 50
"""Supplier disruptions of one scenario."""

MAX_NAME_LENGTH = 100
"""Characters in a scenario or store name. Names must also have no control, bidi-override or surrogate
characters, no leading or trailing whitespace, and not be empty."""

MIN_QUANTITY = 1e-6
"""Smallest demand mean (units per day) and capacity (units) a scenario accepts."""

MAX_QUANTITY = 1e12
"""Largest finite capacity (units) a scenario accepts, and the twin's cap on any single order (units)."""

MAX_DEMAND_MEAN = 1e6
"""Largest demand mean of a store (units per day), and largest daily quantity in a sales history."""

MIN_MAGNITUDE = 1e-9
"""Smallest non-zero magnitude of any scenario number: smaller ones (subnormals included) are rejected."""

MAX_SCENARIO_BYTES = 1_000_000
"""Size of a scenario JSON file (or text), checked before it is parsed."""

MAX_DEMAND_CSV_BYTES = 20_000_000
"""Size of a sales-history CSV file, checked before it is parsed."""

MAX_SEEDS = 10_000
"""Independent chains (``--seeds``) of one command."""

MAX_AGENT_DAYS = 4_000_000
"""Chains x days x agents (stores + 2) of one run: the rollout keeps about 350 bytes per agent-day, so a
run stays under about 1.5 GB of memory."""

MAX_SEED = 2**63 - 1
"""Largest random seed (``--seed``)."""

MAX_TIMESTEPS = 1_000_000_000
"""Agent transitions per training phase (``--timesteps``)."""

MAX_POLICY_LEVEL = MAX_QUANTITY
"""Largest base-stock level in a policy SPEC (units)."""

MAX_POLICY_SAFETY_FACTOR = 100.0
"""Largest ``z`` (standard deviations of safety stock) in a policy SPEC."""

MAX_POLICY_CYCLE_DAYS = float(MAX_DAYS)
"""Largest ``cycle_days`` in a policy SPEC."""

MAX_POLICY_SCALE = 1000.0
"""Largest ``scale`` (multiple of mean demand) of a random policy in a policy SPEC."""
