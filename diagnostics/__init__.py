"""LungLedger diagnostics package."""
