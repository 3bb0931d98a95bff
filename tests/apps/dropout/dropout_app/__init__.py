"""A tiny Flower app for tests/test_deployment_faults.py: no model, a few small arrays."""
