"""The converge engine: desired state (resources), facts and plans (plan), SSH execution (executor)."""
