"""The optional WAF rate rule (WafRateLimit): absent by default, and when set, one regional web ACL
with a per-IP rate-based rule, associated with the API's one stage."""

from __future__ import annotations

import json

import pytest

from tests.cfn import Stack
from tests.test_template import TEMPLATE, translate

WAF_TYPES = {"AWS::WAFv2::WebACL", "AWS::WAFv2::WebACLAssociation"}


@pytest.fixture(scope="module")
def translated() -> dict:
    return translate(TEMPLATE)


def _waf(translated: dict) -> dict[str, dict]:
    return {n: r for n, r in translated["Resources"].items() if r["Type"] in WAF_TYPES}


def test_no_waf_unless_a_rate_is_set(translated):
    waf = _waf(translated)
    assert {r["Type"] for r in waf.values()} == WAF_TYPES
    assert TEMPLATE["Parameters"]["WafRateLimit"]["Default"] == 0
    by_default = Stack(TEMPLATE)
    assert not any(by_default.exists(n) for n in waf)
    for rate in (10, 2000):
        assert all(Stack(TEMPLATE, {"WafRateLimit": rate}).exists(n) for n in waf)


def test_the_rule_blocks_an_ip_above_the_rate_over_5_minutes(translated):
    (acl,) = [r["Properties"] for r in _waf(translated).values() if r["Type"] == "AWS::WAFv2::WebACL"]
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    (rule,) = acl["Rules"]
    assert rule["Statement"] == {"RateBasedStatement": {"Limit": {"Ref": "WafRateLimit"}, "AggregateKeyType": "IP",
                                                         "EvaluationWindowSec": 300}}
    response = rule["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    assert json.loads(body["Content"])["error"]["code"] == "rate_limit_exceeded"


def test_the_acl_guards_the_apis_stage(translated):
    (association,) = [r["Properties"] for r in _waf(translated).values()
                      if r["Type"] == "AWS::WAFv2::WebACLAssociation"]
    (stage,) = [n for n, r in translated["Resources"].items() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert association["ResourceArn"] == {
        "Fn::Sub": f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}::/restapis/${{GatewayApi}}/stages/${{{stage}}}"}
    (acl,) = [n for n, r in _waf(translated).items() if r["Type"] == "AWS::WAFv2::WebACL"]
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl, "Arn"]}
