"""Weights: how a model version is made, stored and derived.

* ``prep``      the bundled model (GGUF -> safetensors directory), model directory checks, sha256
* ``snapshot``  the ``versions/<id>/`` format: a Hugging Face directory plus a typed ``meta.json``
* ``es``        the seed-defined weight arithmetic (noise table, perturbation, ES + AWD step)
                that turns a parent and its seed log into the child, wherever it runs
"""
