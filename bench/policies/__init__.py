"""The policies the policy benchmark runs: the SPEC example, generated ones, their Cedar twins."""
