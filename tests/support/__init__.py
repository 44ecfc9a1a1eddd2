"""Helpers the tests share: builders of chains and records, real-node networks, the API harness.

No test lives here; test modules import from here, never from each other.
"""
