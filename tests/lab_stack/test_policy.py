"""The lab's policy check honours Resource (moto's IAM mode does not) and lets an explicit Deny win."""

from lab.policy import evaluate

PARAM = "arn:aws:ssm:us-east-1:123456789012:parameter/photostack/lab/"
ALLOW_ONE = {"Statement": [{"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": PARAM + "dbPassword"}]}


def test_resource_is_honoured():
    assert evaluate([ALLOW_ONE], "ssm:GetParameter", PARAM + "dbPassword").allowed
    denied = evaluate([ALLOW_ONE], "ssm:GetParameter", PARAM + "redisPassword")
    assert not denied.allowed and denied.reason == "no identity-based policy allows"


def test_wildcards_in_resource_and_action():
    policy = {"Statement": [{"Effect": "Allow", "Action": ["ssm:Get*"], "Resource": [PARAM + "*"]}]}
    assert evaluate([policy], "ssm:GetParametersByPath", PARAM + "shards/map").allowed
    assert evaluate([policy], "SSM:getparameter", PARAM + "x").allowed  # action names ignore case
    assert not evaluate([policy], "ssm:PutParameter", PARAM + "x").allowed
    assert not evaluate([policy], "ssm:GetParameter", PARAM.replace("lab", "prod") + "x").allowed


def test_explicit_deny_wins_across_documents():
    deny = '{"Statement": {"Effect": "Deny", "Action": "ssm:*", "Resource": "*"}}'
    decision = evaluate([ALLOW_ONE, deny], "ssm:GetParameter", PARAM + "dbPassword")
    assert not decision.allowed and decision.reason == "explicit deny"
