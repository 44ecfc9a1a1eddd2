"""LungLedger network package."""
