"""Feedback: wire models, validation and acceptance into the store, and its routes."""
