"""The agents: roles as data, their observations, the action menu, rule-based policies and the tuner."""
