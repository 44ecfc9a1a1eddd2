"""Test harnesses that run real LungLedger nodes: hosts in Linux network namespaces."""
