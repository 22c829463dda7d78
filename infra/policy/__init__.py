"""The photostack policy pack: guardrails `pulumi preview/up --policy-pack infra/policy` enforces."""
