"""The tamper-evident decision log: chain, verify, export."""
