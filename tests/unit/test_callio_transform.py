"""Callio records in every spelling the API uses -> the exact warehouse rows, hashes and rejects."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from zoneinfo import ZoneInfo

import pytest

from include.callio import schema, transform
from include.callio.transform import (
    RecordError,
    business_date,
    call_row,
    custom_field_value,
    customer_row,
    epoch_ms,
    group_row,
    row_hash,
    safe_eval,
    staff_row,
    to_int,
    transform_all,
)
from include.common.jsonutil import content_hash, sha256_hex, stable_json

TENANT = "pk01"
CUSTOMER_ID = "65f0c1a2b3c4d5e6f7a8b9c0"
USER_ID = "65e1a0b1c2d3e4f5a6b7c8d9"
GROUP_ID = "65d0f9e8d7c6b5a4f3e2d1c0"
CALL_ID = "65f1aa00bb11cc22dd33ee44"

# 2024-06-01 16:59:59.999 UTC is 23:59:59.999 in Hanoi; one millisecond later it is 2024-06-02 there.
LAST_MS_OF_JUNE_1 = 1717261199999
FIRST_MS_OF_JUNE_2 = 1717261200000
MARCH_10_0915 = 1710036900000  # 2024-03-10 09:15:00 +07:00


def hashed(row: dict) -> dict:
    """``row`` with the row_hash it must carry, computed by the general jsonutil path."""
    return {**row, "row_hash": content_hash({k: v for k, v in row.items() if k != "row_hash"})}


# --- safe_eval ---------------------------------------------------------------------------------------

USER = {"_id": "a1", "name": "Lan"}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param('{"_id": "a1", "name": "Lan"}', USER, id="json"),
        pytest.param("{'_id': 'a1', 'name': 'Lan'}", USER, id="python-literal"),
        pytest.param(json.dumps(json.dumps(USER)), USER, id="double-encoded"),
        pytest.param(json.dumps(json.dumps(json.dumps(USER))), USER, id="triple-encoded"),
        pytest.param(
            json.dumps(json.dumps(json.dumps(json.dumps(USER)))),
            json.dumps(USER),
            id="decodes-3-times-at-most",
        ),
        pytest.param('  [1, "b", null]  ', [1, "b", None], id="json-list-padded"),
        pytest.param("[{'_id': 'g1'}, 'g2']", [{"_id": "g1"}, "g2"], id="python-list"),
        pytest.param("'Lan'", "Lan", id="python-quoted-text"),
        pytest.param('"null"', None, id="encoded-null"),
        pytest.param("None", None, id="None"),
        pytest.param("null", None, id="null"),
        pytest.param("True", True, id="True"),
        pytest.param("false", False, id="false"),
        pytest.param("", None, id="empty"),
        pytest.param(" \t\n", None, id="blank"),
        pytest.param(None, None, id="none"),
        pytest.param("  Nguyễn Thị Lan ", "Nguyễn Thị Lan", id="plain-text-trimmed"),
        pytest.param(USER_ID, USER_ID, id="bare-id"),
        pytest.param("0901234567", "0901234567", id="numeric-text-stays-text"),
        pytest.param("{not json", "{not json", id="garbled-object"),
        pytest.param("[1, 2", "[1, 2", id="garbled-list"),
        pytest.param("{'_id': ObjectId('a1')}", "{'_id': ObjectId('a1')}", id="call-in-literal"),
        pytest.param("[__import__('os').getcwd()]", "[__import__('os').getcwd()]", id="code-not-run"),
        pytest.param("'unterminated", "'unterminated", id="open-quote"),
        pytest.param(17, 17, id="number"),
    ],
)
def test_safe_eval(payload, expected):
    assert safe_eval(payload) == expected


def test_safe_eval_returns_decoded_objects_as_they_are():
    user, fields = {"_id": "a1"}, [{"key": "k"}]
    assert safe_eval(user) is user
    assert safe_eval(fields) is fields


@pytest.mark.parametrize(
    "garbage",
    [
        "[" * 100_000,
        "{" * 100_000 + "}" * 100_000,
        "'\\x'",
        "{'a': 1j}",
        "[1e999999]",
        "\x00",
        "'" + "9" * 5000,
    ],
    ids=["deep-list", "deep-object", "bad-escape", "complex", "huge-float", "nul", "long-open-quote"],
)
def test_safe_eval_never_raises(garbage):
    safe_eval(garbage)


# --- times -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1717200000000, 1717200000000),
        (1717200000000.0, 1717200000000),
        (1717200000000.9, 1717200000000),
        ("1717200000000", 1717200000000),
        (" 1717200000000 ", 1717200000000),
        ("1.7172e12", 1717200000000),
        ("2024-06-01T00:00:00Z", 1717200000000),
        ("2024-06-01T07:00:00+07:00", 1717200000000),
        ("2024-06-01T00:00:00.123Z", 1717200000123),
        ("2024-06-01 00:00:00", 1717200000000),  # no offset: UTC
        (0, 0),
        ("-1", -1),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        (float("inf"), None),
        (True, None),
        ({"$date": 1717200000000}, None),
        ([1717200000000], None),
    ],
)
def test_epoch_ms(value, expected):
    result = epoch_ms(value)
    assert result == expected
    assert result is None or type(result) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (45, 45),
        ("45", 45),
        (" 45 ", 45),
        (45.0, 45),
        ("45.6", 45),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        (2**63, None),
        ("1e30", None),
        (1e19, None),
        ("", None),
        ("abc", None),
        (None, None),
        (False, None),
        ([45], None),
    ],
)
def test_to_int(value, expected):
    result = to_int(value)
    assert result == expected
    assert result is None or type(result) is int


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        pytest.param(LAST_MS_OF_JUNE_1, dt.date(2024, 6, 1), id="16:59:59.999Z"),
        pytest.param(FIRST_MS_OF_JUNE_2, dt.date(2024, 6, 2), id="17:00:00.000Z"),
        pytest.param(1717174800000, dt.date(2024, 6, 1), id="local-midnight"),
        pytest.param(1717174799999, dt.date(2024, 5, 31), id="just-before-local-midnight"),
        pytest.param(1717200000000, dt.date(2024, 6, 1), id="utc-midnight-is-07:00"),
        pytest.param(1704042000000, dt.date(2024, 1, 1), id="new-year-in-hanoi-while-utc-in-2023"),
        pytest.param(1, dt.date(1970, 1, 1), id="1ms"),
        pytest.param(None, None, id="none"),
        pytest.param(0, None, id="zero"),
        pytest.param(-86_400_000, None, id="negative"),
        pytest.param(10**20, None, id="beyond-9999"),
    ],
)
def test_business_date(ms, expected):
    assert business_date(ms) == expected


def test_business_date_agrees_with_the_time_zone_database():
    zone = ZoneInfo(schema.BUSINESS_TZ)
    start = int(dt.datetime(1975, 6, 13, tzinfo=zone).timestamp() * 1000)
    step = 7 * 86_400_000 + 3_600_000 + 59_999  # drifts across every hour of the day over the years
    for ms in range(start, 4_102_444_800_000, step):  # up to 2100
        expected = dt.datetime.fromtimestamp(ms / 1000, zone).date()
        assert business_date(ms) == expected, ms


# --- customers ---------------------------------------------------------------------------------------


def customer_record(**overrides) -> dict:
    record = {
        "_id": CUSTOMER_ID,
        "name": "Nguyễn Thị Lan",
        "phone": "0901234567",
        "email": "lan.nguyen@example.vn",
        "createTime": MARCH_10_0915,
        "updateTime": FIRST_MS_OF_JUNE_2,
        "assignedTime": LAST_MS_OF_JUNE_1,
        "user": {"_id": USER_ID, "name": "Trần Văn Đức", "group": {"_id": GROUP_ID, "name": "Sale HN"}},
        "customFields": [{"key": "nguon_khach", "val": "Facebook"}, {"key": "ghi_chu", "val": "gọi lại"}],
    }
    record.update(overrides)
    return record


CUSTOMER_ROW = hashed(
    {
        "_id": CUSTOMER_ID,
        "assignedTime": LAST_MS_OF_JUNE_1,
        "createTime": MARCH_10_0915,
        "updateTime": FIRST_MS_OF_JUNE_2,
        "name": "Nguyễn Thị Lan",
        "phone": "0901234567",
        "user_id": USER_ID,
        "user_name": "Trần Văn Đức",
        "user_group_id": GROUP_ID,
        "tenant": TENANT,
        "row_hash": None,
        "customField_0_val": "Facebook",
        "NgayUpdate": dt.date(2024, 6, 2),
        "NgayAssign": dt.date(2024, 6, 1),
    }
)


def test_a_customer_row_has_exactly_the_table_columns():
    row = customer_row(customer_record(), TENANT)
    assert list(row) == schema.CUSTOMER.column_names == schema.STG_CUSTOMER.column_names
    assert row == CUSTOMER_ROW


def test_customer_times_as_text_and_floats():
    row = customer_row(
        customer_record(
            updateTime=str(FIRST_MS_OF_JUNE_2),
            assignedTime=float(LAST_MS_OF_JUNE_1),
            createTime=f" {MARCH_10_0915} ",
        ),
        TENANT,
    )
    assert row == CUSTOMER_ROW


@pytest.mark.parametrize(
    ("overrides", "changed"),
    [
        pytest.param({"assignedTime": None}, {"assignedTime": None, "NgayAssign": None}, id="never-assigned"),
        pytest.param({"assignedTime": 0}, {"assignedTime": 0, "NgayAssign": None}, id="assigned-0"),
        pytest.param(
            {"assignedTime": "later"}, {"assignedTime": None, "NgayAssign": None}, id="assigned-garbage"
        ),
        pytest.param({"createTime": ""}, {"createTime": None}, id="create-blank"),
        pytest.param({"createTime": 10**20}, {"createTime": None}, id="create-beyond-int64"),
        pytest.param({"phone": 84901234567}, {"phone": "84901234567"}, id="phone-number"),
        pytest.param({"phone": "  0901 234 567 "}, {"phone": "0901 234 567"}, id="phone-padded"),
        pytest.param({"phone": ""}, {"phone": None}, id="phone-empty"),
        pytest.param({"name": "  Lê Hoàng  "}, {"name": "Lê Hoàng"}, id="name-padded"),
        pytest.param(
            {"name": unicodedata.normalize("NFD", "Phạm Quỳnh Anh")},
            {"name": "Phạm Quỳnh Anh"},
            id="name-nfd",
        ),
        pytest.param({"name": None}, {"name": None}, id="name-null"),
    ],
)
def test_customer_field_variants(overrides, changed):
    assert customer_row(customer_record(**overrides), TENANT) == hashed({**CUSTOMER_ROW, **changed})


NO_USER = (None, None, None)


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        pytest.param(
            {"_id": USER_ID, "name": "Trần Văn Đức", "group": GROUP_ID},
            (USER_ID, "Trần Văn Đức", GROUP_ID),
            id="dict-group-id",
        ),
        pytest.param(
            json.dumps({"_id": USER_ID, "name": "Trần Văn Đức", "group": {"_id": GROUP_ID}}),
            (USER_ID, "Trần Văn Đức", GROUP_ID),
            id="json",
        ),
        pytest.param(
            json.dumps({"_id": USER_ID, "name": "Trần Văn Đức"}, ensure_ascii=False),
            (USER_ID, "Trần Văn Đức", None),
            id="json-unescaped-no-group",
        ),
        pytest.param(
            str({"_id": USER_ID, "name": "Trần Văn Đức", "group": {"_id": GROUP_ID}}),
            (USER_ID, "Trần Văn Đức", GROUP_ID),
            id="python-literal",
        ),
        pytest.param(
            json.dumps(json.dumps({"_id": USER_ID, "name": "Trần Văn Đức", "group": GROUP_ID})),
            (USER_ID, "Trần Văn Đức", GROUP_ID),
            id="double-encoded",
        ),
        pytest.param(
            {"_id": USER_ID, "name": "Đức", "group": json.dumps({"_id": GROUP_ID})},
            (USER_ID, "Đức", GROUP_ID),
            id="group-json-text",
        ),
        pytest.param(
            {"_id": USER_ID, "name": "Đức", "group": f"{{'_id': '{GROUP_ID}'}}"},
            (USER_ID, "Đức", GROUP_ID),
            id="group-python-literal",
        ),
        pytest.param(
            {"_id": USER_ID, "name": "Đức", "group": [GROUP_ID, "65d0000000000000000000ff"]},
            (USER_ID, "Đức", GROUP_ID),
            id="group-list",
        ),
        pytest.param({"_id": USER_ID, "group": "{broken"}, (USER_ID, None, None), id="group-garbled"),
        pytest.param({"_id": 4021, "name": "  Đức "}, ("4021", "Đức", None), id="numeric-id-padded-name"),
        pytest.param({"name": "Đức"}, (None, "Đức", None), id="dict-without-id"),
        pytest.param([{"_id": USER_ID, "name": "Đức"}], (USER_ID, "Đức", None), id="list-of-one"),
        pytest.param(f"  {USER_ID} ", (USER_ID, None, None), id="bare-id"),
        pytest.param(4021, ("4021", None, None), id="bare-numeric-id"),
        pytest.param(None, NO_USER, id="null"),
        pytest.param("", NO_USER, id="empty"),
        pytest.param("None", NO_USER, id="None-text"),
        pytest.param("{not json", NO_USER, id="garbled"),
        pytest.param("[]", NO_USER, id="empty-list"),
        pytest.param(True, NO_USER, id="boolean"),
    ],
)
def test_customer_user_spellings(user, expected):
    row = customer_row(customer_record(user=user), TENANT)
    assert (row["user_id"], row["user_name"], row["user_group_id"]) == expected
    assert row["row_hash"] == row_hash(row)


def test_customer_without_user():
    record = customer_record()
    del record["user"]
    row = customer_row(record, TENANT)
    assert (row["user_id"], row["user_name"], row["user_group_id"]) == NO_USER


@pytest.mark.parametrize(
    ("custom_fields", "expected"),
    [
        pytest.param([{"key": "nguon", "val": "Zalo"}], "Zalo", id="val"),
        pytest.param([{"key": "nguon", "value": "Zalo"}], "Zalo", id="value"),
        pytest.param([{"key": "nguon", "text": "Khách hàng cũ"}], "Khách hàng cũ", id="text"),
        pytest.param([{"key": "nguon", "name": "Hội chợ"}], "Hội chợ", id="name"),
        pytest.param([{"key": "sp", "values": ["Vay", "Thẻ"]}], "Vay, Thẻ", id="values-list"),
        pytest.param([{"key": "sp", "values": "['Vay', 'Thẻ']"}], "Vay, Thẻ", id="values-python-text"),
        pytest.param([{"key": "sp", "values": '["Vay","Thẻ"]'}], "Vay, Thẻ", id="values-json-text"),
        pytest.param([{"key": "sp", "values": ["", " Vay ", None]}], "Vay", id="values-blanks-dropped"),
        pytest.param([{"key": "sp", "values": [1, 2.0]}], "1, 2", id="values-numbers"),
        pytest.param([{"key": "sp", "values": []}], None, id="values-empty"),
        pytest.param([{"key": "nguon", "name": "Nguồn", "val": "Zalo"}], "Zalo", id="val-before-name"),
        pytest.param([{"key": "nguon", "text": "Zalo OA", "value": "zalo"}], "zalo", id="value-before-text"),
        pytest.param([{"key": "sp", "val": None, "value": "Zalo"}], "Zalo", id="null-val-falls-through"),
        pytest.param([{"key": "sp", "val": "", "value": "Zalo"}], None, id="empty-val-is-empty"),
        pytest.param([{"key": "sp", "val": "   "}], None, id="blank"),
        pytest.param([{"key": "sp", "val": "  Zalo "}], "Zalo", id="trimmed"),
        pytest.param([{"key": "so_lan", "val": 5}], "5", id="number"),
        pytest.param([{"key": "so_lan", "val": 5.0}], "5", id="whole-float"),
        pytest.param([{"key": "vip", "val": True}], "true", id="boolean"),
        pytest.param([{"key": "nguon"}], None, id="no-value-key"),
        pytest.param([{"key": "a", "val": ""}, {"key": "b", "val": "Zalo"}], None, id="only-the-first-field"),
        pytest.param(json.dumps([{"key": "nguon", "val": "Zalo"}]), "Zalo", id="list-json-text"),
        pytest.param(str([{"key": "nguon", "val": "Gọi điện"}]), "Gọi điện", id="list-python-text"),
        pytest.param(['{"key": "nguon", "val": "Zalo"}'], "Zalo", id="element-json-text"),
        pytest.param([], None, id="empty-list"),
        pytest.param(None, None, id="null"),
        pytest.param("", None, id="empty-text"),
        pytest.param("[{broken", None, id="garbled"),
        pytest.param(["Zalo"], None, id="element-not-object"),
        pytest.param({"key": "nguon", "val": "Zalo"}, None, id="object-not-list"),
    ],
)
def test_custom_field_value(custom_fields, expected):
    assert custom_field_value(custom_fields) == expected
    assert customer_row(customer_record(customFields=custom_fields), TENANT)["customField_0_val"] == expected


def test_customer_without_custom_fields():
    record = customer_record()
    del record["customFields"]
    assert customer_row(record, TENANT)["customField_0_val"] is None


# --- calls -------------------------------------------------------------------------------------------


def call_record(**overrides) -> dict:
    record = {
        "_id": CALL_ID,
        "chargeTime": 1710036965000,
        "createTime": MARCH_10_0915,
        "direction": "outbound",
        "fromNumber": "1001",
        "toNumber": "0912345678",
        "startTime": MARCH_10_0915,
        "endTime": 1710037230000,
        "answerTime": 1710036965000,
        "duration": 330,
        "billDuration": 265,
        "hangupCause": "NORMAL_CLEARING",
        "fromUser": {"_id": USER_ID, "name": "Trần Văn Đức"},
        "fromGroup": {"_id": GROUP_ID},
        "recordingUrl": "https://example.invalid/rec.mp3",
    }
    record.update(overrides)
    return record


CALL_ROW = hashed(
    {
        "_id": CALL_ID,
        "chargeTime": 1710036965000,
        "createTime": MARCH_10_0915,
        "direction": "outbound",
        "fromNumber": "1001",
        "toNumber": "0912345678",
        "startTime": MARCH_10_0915,
        "endTime": 1710037230000,
        "duration": 330,
        "billDuration": 265,
        "hangupCause": "NORMAL_CLEARING",
        "answerTime": 1710036965000,
        "fromUser__id": USER_ID,
        "fromUser__name": "Trần Văn Đức",
        "fromGroup__id": GROUP_ID,
        "tenant": TENANT,
        "row_hash": None,
        "NgayTao": dt.date(2024, 3, 10),
    }
)


def test_a_call_row_has_exactly_the_table_columns():
    row = call_row(call_record(), TENANT)
    assert list(row) == schema.CALL_LOG.column_names == schema.STG_CALL_LOG.column_names
    assert row == CALL_ROW


@pytest.mark.parametrize(
    ("overrides", "changed"),
    [
        pytest.param(
            {"duration": "330", "billDuration": 265.0, "createTime": str(MARCH_10_0915)},
            {},
            id="numbers-as-text",
        ),
        pytest.param({"fromUser": json.dumps({"_id": USER_ID, "name": "Trần Văn Đức"})}, {}, id="user-json"),
        pytest.param({"fromUser": str({"_id": USER_ID, "name": "Trần Văn Đức"})}, {}, id="user-python"),
        pytest.param({"fromGroup": json.dumps({"_id": GROUP_ID})}, {}, id="group-json"),
        pytest.param({"fromGroup": f"{{'_id': '{GROUP_ID}'}}"}, {}, id="group-python"),
        pytest.param({"fromGroup": GROUP_ID}, {}, id="group-bare-id"),
        pytest.param(
            {"fromUser": json.dumps(json.dumps({"_id": USER_ID}))}, {"fromUser__name": None}, id="user-double"
        ),
        pytest.param({"fromUser": USER_ID}, {"fromUser__name": None}, id="user-bare-id"),
        pytest.param(
            {"fromUser": None, "fromGroup": ""},
            {"fromUser__id": None, "fromUser__name": None, "fromGroup__id": None},
            id="no-user-no-group",
        ),
        pytest.param(
            {"fromUser": "{'_id': ", "fromGroup": "{not json"},
            {"fromUser__id": None, "fromUser__name": None, "fromGroup__id": None},
            id="garbled",
        ),
        pytest.param(
            {"answerTime": 0, "chargeTime": None, "billDuration": "", "duration": "n/a"},
            {"answerTime": 0, "chargeTime": None, "billDuration": None, "duration": None},
            id="unanswered",
        ),
        pytest.param({"fromNumber": 1001}, {}, id="extension-as-number"),
        pytest.param(
            {"createTime": LAST_MS_OF_JUNE_1},
            {"createTime": LAST_MS_OF_JUNE_1, "NgayTao": dt.date(2024, 6, 1)},
            id="16:59:59.999Z-is-june-1",
        ),
        pytest.param(
            {"createTime": FIRST_MS_OF_JUNE_2},
            {"createTime": FIRST_MS_OF_JUNE_2, "NgayTao": dt.date(2024, 6, 2)},
            id="17:00Z-is-june-2",
        ),
    ],
)
def test_call_variants(overrides, changed):
    assert call_row(call_record(**overrides), TENANT) == hashed({**CALL_ROW, **changed})


# --- staff and groups --------------------------------------------------------------------------------


def staff_record(**overrides) -> dict:
    record = {
        "_id": USER_ID,
        "email": "duc.tran@example.vn",
        "name": "Trần Văn Đức",
        "role": "agent",
        "ext": "1001",
        "active": True,
        "createTime": 1700000000000,
        "updateTime": "1717200000000",
        "group": GROUP_ID,
    }
    record.update(overrides)
    return record


STAFF_ROW = hashed(
    {
        "_id": USER_ID,
        "email": "duc.tran@example.vn",
        "name": "Trần Văn Đức",
        "updateTime": 1717200000000,
        "createTime": 1700000000000,
        "group_id": GROUP_ID,
        "tenant": TENANT,
        "row_hash": None,
    }
)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        pytest.param(GROUP_ID, GROUP_ID, id="id"),
        pytest.param({"_id": GROUP_ID, "name": "Sale HN"}, GROUP_ID, id="dict"),
        pytest.param([GROUP_ID, "65d0000000000000000000ff"], GROUP_ID, id="list-of-ids"),
        pytest.param([{"_id": GROUP_ID}, {"_id": "65d0000000000000000000ff"}], GROUP_ID, id="list-of-dicts"),
        pytest.param(json.dumps([GROUP_ID]), GROUP_ID, id="list-json-text"),
        pytest.param([], None, id="empty-list"),
        pytest.param(None, None, id="null"),
    ],
)
def test_staff_row(group, expected):
    row = staff_row(staff_record(group=group), TENANT)
    assert list(row) == schema.STAFF.column_names == schema.STG_STAFF.column_names
    assert row == hashed({**STAFF_ROW, "group_id": expected})


def test_staff_without_times_is_still_loaded():
    row = staff_row(staff_record(createTime=None, updateTime="?"), TENANT)
    assert row == hashed({**STAFF_ROW, "createTime": None, "updateTime": None})


def test_group_row():
    row = group_row({"_id": GROUP_ID, "name": " Sale Hà Nội ", "members": 12}, TENANT)
    assert list(row) == schema.GROUP.column_names == schema.STG_GROUP.column_names
    assert row == hashed({"group_id": GROUP_ID, "name": "Sale Hà Nội", "tenant": TENANT, "row_hash": None})


# --- row_hash ----------------------------------------------------------------------------------------


def test_row_hash_is_the_content_hash_of_the_other_columns():
    row = customer_row(customer_record(), TENANT)
    assert row_hash(row) == row["row_hash"] == content_hash({k: v for k, v in row.items() if k != "row_hash"})
    assert row_hash({**row, "row_hash": "stale"}) == row["row_hash"]


def test_row_hash_ignores_key_order_and_number_spelling():
    row = {"_id": CALL_ID, "duration": 1, "NgayTao": dt.date(2024, 6, 1), "name": "Đức", "x": None}
    assert row_hash(row) == row_hash(dict(reversed(row.items())))
    assert row_hash(row) == row_hash({**row, "duration": 1.0})
    assert row_hash(row) != row_hash({**row, "duration": 1.5})


def test_row_hash_renders_dates_iso():
    assert row_hash({"NgayTao": dt.date(2024, 6, 1), "row_hash": None}) == sha256_hex(
        '{"NgayTao":"2024-06-01"}'
    )


def test_escaped_and_literal_unicode_give_one_hash():
    escaped_text = json.dumps(customer_record(), ensure_ascii=True)
    literal_text = json.dumps(customer_record(), ensure_ascii=False)
    assert "\\u1ec5" in escaped_text and "ễ" in literal_text  # "Nguyễn"
    escaped, literal = json.loads(escaped_text), json.loads(literal_text)
    assert customer_row(escaped, TENANT)["row_hash"] == customer_row(literal, TENANT)["row_hash"]
    assert customer_row(escaped, TENANT)["row_hash"] == CUSTOMER_ROW["row_hash"]


@pytest.mark.parametrize(
    "same",
    [
        pytest.param({"user": str(customer_record()["user"])}, id="user-python-literal"),
        pytest.param({"user": json.dumps(customer_record()["user"])}, id="user-json-escaped"),
        pytest.param({"customFields": json.dumps(customer_record()["customFields"])}, id="fields-json"),
        pytest.param({"name": unicodedata.normalize("NFD", "Nguyễn Thị Lan")}, id="name-decomposed"),
        pytest.param({"updateTime": f"{FIRST_MS_OF_JUNE_2}.0"}, id="time-as-float-text"),
    ],
)
def test_spellings_of_one_customer_hash_alike(same):
    assert customer_row(customer_record(**same), TENANT)["row_hash"] == CUSTOMER_ROW["row_hash"]


@pytest.mark.parametrize("column", [c for c in schema.CUSTOMER.column_names if c != "row_hash"])
def test_any_changed_column_changes_the_hash(column):
    other = {**CUSTOMER_ROW, column: "changed"}
    assert row_hash(other) != CUSTOMER_ROW["row_hash"]


# --- malformed records -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row_fn", "record", "reason"),
    [
        (customer_row, {k: v for k, v in customer_record().items() if k != "_id"}, "missing _id"),
        (customer_row, customer_record(_id="   "), "missing _id"),
        (customer_row, customer_record(_id=None), "missing _id"),
        (customer_row, customer_record(_id={"$oid": CUSTOMER_ID}), "missing _id"),
        (
            customer_row,
            {k: v for k, v in customer_record().items() if k != "updateTime"},
            "missing updateTime",
        ),
        (customer_row, customer_record(updateTime=" "), "missing updateTime"),
        (customer_row, customer_record(updateTime="yesterday"), "updateTime is not a time"),
        (customer_row, customer_record(updateTime=0), "updateTime is not a time"),
        (customer_row, customer_record(updateTime=-1), "updateTime is not a time"),
        (customer_row, customer_record(updateTime=10**20), "updateTime is not a time"),
        (customer_row, customer_record(updateTime=True), "updateTime is not a time"),
        (customer_row, "not a record", "record is not an object"),
        (call_row, call_record(_id=""), "missing _id"),
        (call_row, call_record(createTime=None), "missing createTime"),
        (call_row, call_record(createTime="{}"), "createTime is not a time"),
        (call_row, [call_record()], "record is not an object"),
        (staff_row, staff_record(_id=None), "missing _id"),
        (staff_row, staff_record(name="  "), "missing name"),
        (group_row, {"name": "Sale HN"}, "missing _id"),
        (group_row, None, "record is not an object"),
    ],
)
def test_malformed_records_are_refused_with_their_reason(row_fn, record, reason):
    with pytest.raises(RecordError) as info:
        row_fn(record, TENANT)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_transform_all_keeps_going_past_rejects():
    good = [customer_record(), customer_record(_id="65f0c1a2b3c4d5e6f7a8b9c1")]
    no_time = customer_record(_id="65f0c1a2b3c4d5e6f7a8b9c2", updateTime="n/a")
    no_id = customer_record(_id="")
    rows, rejects = transform_all([good[0], no_time, no_id, "oops", good[1]], TENANT, customer_row)
    assert rows == [customer_row(record, TENANT) for record in good]
    assert rejects == [
        {
            "table_name": "customer",
            "tenant": TENANT,
            "record_id": "65f0c1a2b3c4d5e6f7a8b9c2",
            "reason": "updateTime is not a time",
            "payload": stable_json(no_time),
        },
        {
            "table_name": "customer",
            "tenant": TENANT,
            "record_id": None,
            "reason": "missing _id",
            "payload": stable_json(no_id),
        },
        {
            "table_name": "customer",
            "tenant": TENANT,
            "record_id": None,
            "reason": "record is not an object",
            "payload": '"oops"',
        },
    ]
    expected_columns = [c for c in schema.REJECTS.column_names if c not in ("run_id", "rejected_at")]
    assert all(list(reject) == expected_columns for reject in rejects)


@pytest.mark.parametrize(
    ("row_fn", "record", "table_name"),
    [
        (call_row, call_record(createTime=None), "call_log"),
        (staff_row, staff_record(_id=None), "staff"),
        (group_row, {"_id": " "}, "group"),
    ],
)
def test_rejects_name_the_table_of_the_row_function(row_fn, record, table_name):
    rows, rejects = transform_all([record], TENANT, row_fn)
    assert rows == []
    assert [reject["table_name"] for reject in rejects] == [table_name]


def test_reject_payload_is_cut_to_2000_characters():
    record = customer_record(updateTime=None, notes="ghi chú " * 1000)
    _, [reject] = transform_all([record], TENANT, customer_row)
    assert reject["payload"] == stable_json(record)[: transform.REJECT_PAYLOAD_CHARS]
    assert len(reject["payload"]) == 2000


def test_transform_all_does_not_hide_defects(monkeypatch):
    def broken_row(record, tenant):
        raise KeyError("a defect, not a bad record")

    monkeypatch.setitem(transform.TABLE_OF_ROW_FN, broken_row, "customer")
    with pytest.raises(KeyError):
        transform_all([customer_record()], TENANT, broken_row)
