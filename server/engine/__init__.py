"""The serving engine: a vLLM OpenAI server process we start, supervise and talk to.

Only the engine modules import ``vllm`` (``worker_ext`` runs inside the engine process); the
supervisor and the client here speak to it over loopback HTTP.
"""
