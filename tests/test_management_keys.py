"""Key management routes (API.md 5.1): create, update, list, delete; admin only, own user only."""

from __future__ import annotations

import time

import httpx
import pytest

from llm_gateway.admission.keys import KEY_LENGTH
from tests.conftest import extra_gateway
from tests.platform_client import ADMIN, ENCODINGS, chat, data, post, refusal

KEY_FIELDS = {"key_id", "key", "user_id", "remark", "permissions", "rpm", "is_admin", "is_disabled",
              "created_at", "used_at", "expired_at", "used_times", "used_fee", "max_fee"}


def admin_of(gateway, **user) -> tuple[str, str]:
    user_id = gateway.user(**user)
    return user_id, gateway.key(user_id, is_admin=True)


def listed(gateway, admin: str) -> dict[str, dict]:
    return {k["key_id"]: k for k in data(post(gateway.url, f"{ADMIN}/get-api-tokens", admin))}


# --- create --------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_create_returns_the_full_key_once_and_lists_it_masked(gateway, encoding):
    user_id, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin, {
        "remark": "ci bot", "permissions": ["gpt-4o", "mock-*"], "rpm": 30, "max_fee": "2.5",
        "expired_at": "2031-01-31T00:00:00Z",
    }, encoding))
    assert set(created) == KEY_FIELDS
    full = created["key"]
    assert full.startswith("sk-") and len(full) == KEY_LENGTH
    assert created["key_id"].startswith("key_") and len(created["key_id"]) == 16
    assert created | {"key": None, "key_id": None, "created_at": None} == {
        "key": None, "key_id": None, "created_at": None, "user_id": user_id, "remark": "ci bot",
        "permissions": ["gpt-4o", "mock-*"], "rpm": 30, "is_admin": False, "is_disabled": False,
        "used_at": None, "expired_at": "2031-01-31T00:00:00Z", "used_times": 0, "used_fee": "0",
        "max_fee": "2.5",
    }
    shown = listed(gateway, admin)[created["key_id"]]
    assert shown["key"] == f"{full[:8]}...{full[-4:]}"
    assert shown | {"key": full} == created
    stored = gateway.store.get_key(created["key_id"])
    assert full not in repr(stored)  # only its hash and its masked form are kept


def test_create_alias_and_defaults(gateway):
    _, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/create-api-token", admin))
    assert (created["remark"], created["permissions"], created["rpm"], created["max_fee"], created["expired_at"]) \
        == ("", [], None, None, None)
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 200


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_permissions_may_be_a_comma_list(gateway, encoding):
    _, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin,
                        {"permissions": "gpt-4o, claude-*"}, encoding))
    assert created["permissions"] == ["gpt-4o", "claude-*"]


def test_max_fee_and_expiry_accept_json_numbers(gateway):
    _, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin,
                        {"max_fee": 0.25, "expired_at": 1_924_992_000}))
    assert created["max_fee"] == "0.25" and created["expired_at"] == "2031-01-01T00:00:00Z"


# --- update --------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("by", ["key", "key_id"])
def test_update_changes_only_the_fields_sent(gateway, encoding, by):
    _, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin, {"remark": "old", "rpm": 5}))
    updated = data(post(gateway.url, f"{ADMIN}/update-api-token", admin, {
        by: created[by], "remark": "new", "permissions": ["mock-gpt"], "max_fee": "1.000001",
        "expired_at": "2032-02-02T02:02:02Z", "is_disabled": True,
    }, encoding))
    assert updated["key"] == created["key"][:8] + "..." + created["key"][-4:]
    assert updated | {"key": created["key"]} == created | {
        "remark": "new", "permissions": ["mock-gpt"], "max_fee": "1.000001",
        "expired_at": "2032-02-02T02:02:02Z", "is_disabled": True,
    }
    assert listed(gateway, admin)[created["key_id"]] == updated


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_update_with_null_or_empty_clears_the_optional_limits(gateway, encoding):
    _, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin,
                        {"rpm": 5, "max_fee": "3", "expired_at": "2031-01-01", "permissions": ["a"]}))
    updated = data(post(gateway.url, f"{ADMIN}/update-api-token", admin, {
        "key_id": created["key_id"], "rpm": None, "max_fee": None, "expired_at": None, "permissions": [],
    }, encoding))
    assert (updated["rpm"], updated["max_fee"], updated["expired_at"], updated["permissions"]) == (None, None, None, [])


def test_update_can_enable_a_disabled_key(gateway):
    _, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin))
    post(gateway.url, f"{ADMIN}/update-api-token", admin, {"key_id": created["key_id"], "is_disabled": "1"})
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 401
    again = data(post(gateway.url, f"{ADMIN}/update-api-token", admin,
                      {"key_id": created["key_id"], "is_disabled": "false"}, "form"))
    assert again["is_disabled"] is False
    assert chat(gateway.url, created["key"], "mock-gpt").status_code == 200


# --- delete --------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("route", ["del-api-token", "delete-api-token"])
@pytest.mark.parametrize("by", ["key", "key_id"])
def test_delete_removes_the_key(gateway, encoding, route, by):
    _, admin = admin_of(gateway)
    created = data(post(gateway.url, f"{ADMIN}/new-api-token", admin))
    assert data(post(gateway.url, f"{ADMIN}/{route}", admin, {by: created[by]}, encoding)) is None
    assert created["key_id"] not in listed(gateway, admin)
    refusal(post(gateway.url, f"{ADMIN}/{route}", admin, {by: created[by]}, encoding), 404, "not_found_error")


# --- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("route, fields, named", [
    ("new-api-token", {"rpm": "fast"}, "rpm"),
    ("new-api-token", {"rpm": 0}, "rpm"),
    ("new-api-token", {"max_fee": "-1"}, "max_fee"),
    ("new-api-token", {"max_fee": "0.0000001"}, "max_fee"),
    ("new-api-token", {"max_fee": "lots"}, "max_fee"),
    ("new-api-token", {"expired_at": "next tuesday"}, "expired_at"),
    ("new-api-token", {"permissions": "[\"gpt-4o\""}, "permissions"),
    ("new-api-token", {"remark": "x" * 1025}, "remark"),
    ("new-api-token", {"is_admin": True}, "is_admin"),
    ("new-api-token", {"is_admin": False}, "is_admin"),
    ("update-api-token", {"remark": "no key named"}, "key"),
    ("update-api-token", {"key_id": "KEY_ID", "is_admin": True}, "is_admin"),
    ("update-api-token", {"key_id": "KEY_ID", "is_disabled": "maybe"}, "is_disabled"),
    ("update-api-token", {"key_id": "KEY_ID", "rpm": "-3"}, "rpm"),
    ("del-api-token", {}, "key"),
])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_wrong_or_missing_fields_are_400_naming_the_field(gateway, route, fields, named, encoding):
    user_id, admin = admin_of(gateway)
    target = gateway.store.list_keys(user_id)[0]
    fields = {k: target.key_id if v == "KEY_ID" else v for k, v in fields.items()}
    message = refusal(post(gateway.url, f"{ADMIN}/{route}", admin, fields, encoding), 400, "invalid_request_error")
    assert f"'{named}'" in message
    after = gateway.store.get_key(target.key_id)
    assert after == target and len(gateway.store.list_keys(user_id)) == 1  # nothing changed


@pytest.mark.parametrize("fields, named", [
    ({"permissions": 5}, "permissions"), ({"remark": 5}, "remark"), ({"rpm": True}, "rpm"),
    ({"max_fee": [1]}, "max_fee"),
])
def test_json_values_of_the_wrong_type_are_400_naming_the_field(gateway, fields, named):
    _, admin = admin_of(gateway)
    message = refusal(post(gateway.url, f"{ADMIN}/new-api-token", admin, fields), 400, "invalid_request_error")
    assert f"'{named}'" in message


def test_json_key_of_the_wrong_type_is_400(gateway):
    _, admin = admin_of(gateway)
    message = refusal(post(gateway.url, f"{ADMIN}/update-api-token", admin, {"key": 123}), 400,
                      "invalid_request_error")
    assert "'key'" in message


def test_a_body_that_is_not_json_is_400(gateway):
    _, admin = admin_of(gateway)
    r = httpx.post(gateway.url + f"{ADMIN}/new-api-token", headers={"Authorization": f"Bearer {admin}",
                   "content-type": "application/json"}, content=b"{not json")
    refusal(r, 400, "invalid_request_error")


ADMIN_ROUTES = ["new-api-token", "create-api-token", "update-api-token", "get-api-tokens", "del-api-token",
                "delete-api-token", "get-membership-expire-date", "balance"]


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_a_non_admin_key_is_403_before_its_body_is_read(gateway, route):
    user_id = gateway.user()
    plain = gateway.key(user_id)
    r = httpx.post(gateway.url + f"{ADMIN}/{route}", headers={"Authorization": f"Bearer {plain}",
                   "content-type": "application/json"}, content=b"{not json")
    refusal(r, 403, "permission_error")
    assert len(gateway.store.list_keys(user_id)) == 1


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_no_key_or_an_unknown_key_is_401(gateway, route):
    refusal(post(gateway.url, f"{ADMIN}/{route}", None), 401, "invalid_api_key")
    refusal(post(gateway.url, f"{ADMIN}/{route}", "sk-" + "x" * 45), 401, "invalid_api_key")


@pytest.mark.parametrize("route", ["update-api-token", "del-api-token"])
@pytest.mark.parametrize("reference", [
    {"key_id": "key_doesnotexist"},
    {"key": "sk-" + "n" * 45},
    {"key": "sk-abcdefg...wxyz"},
])
def test_an_unknown_key_is_404(gateway, route, reference):
    _, admin = admin_of(gateway)
    message = refusal(post(gateway.url, f"{ADMIN}/{route}", admin, {**reference, "remark": "x"}), 404,
                      "not_found_error")
    assert message == "API key not found."


def test_key_and_key_id_naming_different_keys_is_404(gateway):
    user_id, admin = admin_of(gateway)
    other = data(post(gateway.url, f"{ADMIN}/new-api-token", admin))
    r = post(gateway.url, f"{ADMIN}/del-api-token", admin, {"key": admin, "key_id": other["key_id"]})
    refusal(r, 404, "not_found_error")
    assert len(gateway.store.list_keys(user_id)) == 2


# --- tenant isolation ----------------------------------------------------------------------------

def test_an_admin_can_neither_see_change_nor_delete_another_users_keys(gateway):
    _, admin_a = admin_of(gateway)
    user_b, admin_b = admin_of(gateway)
    victim = data(post(gateway.url, f"{ADMIN}/new-api-token", admin_b, {"remark": "b's", "permissions": ["mock-gpt"]}))
    before = gateway.store.get_key(victim["key_id"])

    assert victim["key_id"] not in listed(gateway, admin_a)
    missing = {"key_id": "key_" + "z" * 12}
    # 8 key changes: within the per-user budget of 10 a second, so every answer is the lookup's own.
    for route in ("update-api-token", "del-api-token"):
        absent = post(gateway.url, f"{ADMIN}/{route}", admin_a, {**missing, "is_disabled": True})
        assert absent.status_code == 404
        for reference in ({"key_id": victim["key_id"]}, {"key": victim["key"]}, {"key": admin_b}):
            foreign = post(gateway.url, f"{ADMIN}/{route}", admin_a,
                           {**reference, "is_disabled": True, "permissions": []})
            assert foreign.status_code == 404
            assert foreign.json() == absent.json()  # nothing tells a foreign key from a missing one

    assert gateway.store.get_key(victim["key_id"]) == before
    assert chat(gateway.url, victim["key"], "mock-gpt").status_code == 200
    assert len(gateway.store.list_keys(user_b)) == 2


def test_an_admin_may_manage_its_own_admin_key_but_not_promote_one(gateway):
    user_id, admin = admin_of(gateway)
    own = gateway.store.list_keys(user_id)[0]
    updated = data(post(gateway.url, f"{ADMIN}/update-api-token", admin, {"key": admin, "remark": "mine"}))
    assert updated["is_admin"] is True and updated["remark"] == "mine" and updated["key_id"] == own.key_id


# --- key cap -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def capped(gateway, tmp_path_factory):
    with extra_gateway(gateway, tmp_path_factory.mktemp("capped") / "gateway.db", max_keys_per_user=3) as g:
        yield g


def test_a_user_holds_at_most_the_key_cap(capped):
    user_id, admin = admin_of(capped)  # the admin key is one of the three
    made = [data(post(capped.url, f"{ADMIN}/new-api-token", admin)) for _ in range(2)]
    message = refusal(post(capped.url, f"{ADMIN}/new-api-token", admin), 400, "invalid_request_error")
    assert "3" in message
    assert len(capped.store.list_keys(user_id)) == 3

    data(post(capped.url, f"{ADMIN}/del-api-token", admin, {"key_id": made[0]["key_id"]}))
    data(post(capped.url, f"{ADMIN}/new-api-token", admin))
    assert len(capped.store.list_keys(user_id)) == 3


def test_the_key_cap_is_per_user(capped):
    _, admin_a = admin_of(capped)
    _, admin_b = admin_of(capped)
    for _ in range(2):
        data(post(capped.url, f"{ADMIN}/new-api-token", admin_a))
    data(post(capped.url, f"{ADMIN}/new-api-token", admin_b))


# --- rate limits ---------------------------------------------------------------------------------

def _within_one_second(attempt):
    """Run `attempt()` (a list of statuses and headers) in a fresh one-second window.

    The limit's window is one second of server time; a burst slower than that proves nothing, so
    it is tried again, and the test fails if no burst ever fits.
    """
    for _ in range(3):
        time.sleep(1.05)  # every window of this user has closed
        started = time.monotonic()
        result = attempt()
        if time.monotonic() - started < 0.9:
            return result
    pytest.fail("could not send the burst within one second")


def test_the_eleventh_key_change_within_a_second_is_429(gateway):
    _, admin = admin_of(gateway)
    keys = [data(post(gateway.url, f"{ADMIN}/new-api-token", admin)) for _ in range(3)]

    def burst():
        out = [post(gateway.url, f"{ADMIN}/new-api-token", admin) for _ in range(4)]
        out += [post(gateway.url, f"{ADMIN}/update-api-token", admin, {"key_id": k["key_id"], "remark": "r"})
                for k in keys]
        out += [post(gateway.url, f"{ADMIN}/del-api-token", admin, {"key_id": k["key_id"]}) for k in keys]
        out.append(post(gateway.url, f"{ADMIN}/create-api-token", admin))
        return out

    responses = _within_one_second(burst)
    assert [r.status_code for r in responses] == [200] * 10 + [429], [r.text[:200] for r in responses]
    refusal(responses[-1], 429, "rate_limit_error")
    assert responses[-1].headers["retry-after"] == "1"
    time.sleep(1.05)
    data(post(gateway.url, f"{ADMIN}/new-api-token", admin))


def test_the_second_listing_within_a_second_is_429(gateway):
    _, admin = admin_of(gateway)
    responses = _within_one_second(lambda: [post(gateway.url, f"{ADMIN}/get-api-tokens", admin) for _ in range(2)])
    data(responses[0])
    refusal(responses[1], 429, "rate_limit_error")
    assert responses[1].headers["retry-after"] == "1"
    time.sleep(1.05)
    data(post(gateway.url, f"{ADMIN}/get-api-tokens", admin))


def test_the_limits_are_per_user_and_listing_has_its_own(gateway):
    _, admin_a = admin_of(gateway)
    _, admin_b = admin_of(gateway)

    def burst():
        a = [post(gateway.url, f"{ADMIN}/new-api-token", admin_a) for _ in range(10)]
        return a + [post(gateway.url, f"{ADMIN}/get-api-tokens", admin_a),
                    post(gateway.url, f"{ADMIN}/new-api-token", admin_b)]

    assert [r.status_code for r in _within_one_second(burst)] == [200] * 12
