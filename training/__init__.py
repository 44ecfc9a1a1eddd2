"""LungLedger training package."""
