"""Thin HTTP routes; services live in ``server/serving.py`` and friends."""
