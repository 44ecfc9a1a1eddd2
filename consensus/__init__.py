"""LungLedger consensus package."""
