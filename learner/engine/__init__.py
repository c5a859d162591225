"""The learner engine: a vLLM server whose worker holds the ES master (``es_worker``), the fast
CPU weight path (``kernel_load``) and the driver's handle (``handle``). Only these modules
import vllm, lazily, inside the engine process."""
