"""What the model is measured on: data plus pure scoring, shared by the gateway and the learner.

* ``verifiers``  reference-answer checks (exact, contains, number, regex, JSON schema)
* ``suites``     versioned prior-capability suites (JSONL) and the gate's probe prompts
* ``tasks``      training and held-out items of the shipped tasks (e.g. addition)
"""
