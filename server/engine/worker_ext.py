"""Worker extension loaded into every vLLM worker of a Perennial engine.

vLLM mixes this class into its worker (``--worker-extension-cls
server.engine.worker_ext.ServingWorkerExtension``); its methods run inside the engine process
and are reached through ``POST /collective_rpc {"method": "perennial_..."}``. The HTTP route
passes arguments as JSON strings, so methods take strings and parse them.
"""

from __future__ import annotations

import os


class ServingWorkerExtension:
    """Methods the gateway calls on the serving engine's workers."""

    def perennial_ping(self) -> dict:
        """Proves the extension is loaded: the worker's pid and the model it holds."""
        model_config = self.model_runner.model_config  # type: ignore[attr-defined]
        return {
            "extension": type(self).__name__,
            "pid": os.getpid(),
            "model": str(model_config.model),
            "dtype": str(model_config.dtype),
        }
