"""Statistics on common random numbers, the evaluation report and the twin's self-checks."""
