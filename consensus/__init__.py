"""Pure consensus rules of the LungLedger chain.

No I/O, no clock, no randomness: time, the member list and chain parameters
come in as arguments. See docs/PROTOCOL.md for the rules in prose.
"""
