"""Perennial: the command line that composes the processes (gateway, learner) and the clients."""
