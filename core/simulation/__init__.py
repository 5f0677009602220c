"""The physics: validated scenarios, demand, the batched twin, the reconciliation ledger, rollouts and KPIs."""
