"""Running decided calls: identities, claims and leases, outcomes, holds, reconciliation."""
