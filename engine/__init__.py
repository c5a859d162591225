"""vLLM engines: the serving engine and the learner engine, and the worker code inside them.

The only package that imports ``vllm`` (lazily, and only inside the engine processes):

* ``supervisor``      starts, health-checks and restarts a vLLM OpenAI server child process
* ``client``          loopback HTTP client of one engine (chat, pause/resume, collective RPC)
* ``runtime``         the gateway's view of its serving engine (supervised or attached by URL)
* ``replicas``        several serving engines as one: rotation, least-outstanding routing, retries
* ``learner_engine``  the learner's handle: seeds and coefficients in, scalars out
* ``rpc``             the one error policy of every worker method (never kills the engine)
* ``threads``         CPU thread plans: which cores an engine's OpenMP threads run on
* ``serving_worker``  worker extension of the serving engine (verified hot-swap loads)
* ``es_worker``       worker extension of the learner engine (fp32 master, members, updates)
* ``kernel_load``     the direct CPU weight path into vLLM's packed kernels
"""
