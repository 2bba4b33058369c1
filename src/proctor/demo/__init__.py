"""``proctor demo``: a support agent on realistic tickets, governed end to end."""
