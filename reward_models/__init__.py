"""Frozen learned reward models (Bradley–Terry on synthetic preferences).

Not implemented yet: the reward-models issue adds reward nets, preference data, training,
the zoo of shipped models and their hash-checked loading. Until then experiments train on the
environment's own reward and ``reward_model`` must be null in a config.
"""
