"""The converge engine: desired state (resources), facts and the plan of changes (changes), SSH execution (executor).

A library that knows nothing of photostack (tests/model/test_import_graph.py holds it to that):
photostack's roles get their context from roles/context.py above it."""
