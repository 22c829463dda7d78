"""Policy pack entry point: `pulumi preview --policy-pack infra/policy`."""

import sys
from pathlib import Path

# The pack runs from its own directory; the repository root holds the `infra` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from infra.policy.policies import POLICIES  # noqa: E402

PolicyPack(name="photostack", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
