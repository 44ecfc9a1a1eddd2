"""LungLedger node package."""
