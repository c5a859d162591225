"""Admin routes (admin key): engine state, stored data, learner rounds, prior suites."""
