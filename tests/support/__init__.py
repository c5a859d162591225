"""Test helpers: real processes (gateway + vLLM engine) started once per test session."""
