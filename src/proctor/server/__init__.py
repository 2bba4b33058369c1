"""The team server: the API (/api/v1), the review console and their access rules."""
