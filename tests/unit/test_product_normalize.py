"""Normalizing raw ``products_staging`` rows and the ``data_version`` of the result."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal

import pytest

from include.common.jsonutil import content_hash, stable_json
from include.product.normalize import (
    NormalizeError,
    Product,
    RejectReason,
    normalize,
)

T0 = dt.datetime(2024, 6, 1, 8, 0, 0)


def raw(**overrides):
    row = {
        "id": 7,
        "brand_code": "bl",
        "sku": "A100",
        "name": "单鞋",
        "price": "1299",
        "currency": "CNY",
        "category": "女鞋/单鞋",
        "attributes": '{"color": "红", "size": 37}',
        "images": '["https://img/1.jpg", "https://img/2.jpg"]',
        "status": "on_sale",
        "is_active": "1",
        "src_updated_at": T0,
    }
    row.update(overrides)
    return row


def rejected(**overrides) -> NormalizeError:
    with pytest.raises(NormalizeError) as info:
        normalize(raw(**overrides))
    return info.value


def version(**overrides) -> str:
    return normalize(raw(**overrides)).data_version


# --- the whole row -----------------------------------------------------------------------------------


def test_a_clean_row():
    product = normalize(raw())
    assert product == Product(
        brand_code="BL",
        sku="A100",
        name="单鞋",
        price=Decimal("1299.00"),
        currency="CNY",
        category="女鞋/单鞋",
        attributes={"color": "红", "size": 37},
        images=("https://img/1.jpg", "https://img/2.jpg"),
        status="on_sale",
        is_active=True,
        src_updated_at=T0,
        staging_id=7,
    )
    assert product.key == ("BL", "A100")
    assert product.attributes_json == '{"color":"红","size":37}'
    assert product.images_json == '["https://img/1.jpg","https://img/2.jpg"]'
    assert product.business_fields() == {
        "name": "单鞋",
        "price": Decimal("1299.00"),
        "currency": "CNY",
        "category": "女鞋/单鞋",
        "attributes": {"color": "红", "size": 37},
        "images": ["https://img/1.jpg", "https://img/2.jpg"],
        "status": "on_sale",
        "is_active": True,
    }
    assert product.data_version == content_hash(product.business_fields())
    assert len(product.data_version) == 64


def test_products_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        normalize(raw()).sku = "B"  # type: ignore[misc]


def test_missing_optional_fields_are_none_or_empty():
    row = {"id": 1, "brand_code": "BL", "sku": "A1", "src_updated_at": T0}
    product = normalize(row)
    assert (product.name, product.price, product.currency, product.category) == (None, None, None, None)
    assert (product.attributes, product.images, product.status, product.is_active) == ({}, (), None, None)
    assert product.attributes_json == "{}"
    assert product.images_json == "[]"


# --- text --------------------------------------------------------------------------------------------


def test_text_is_trimmed_and_whitespace_runs_collapse():
    product = normalize(
        raw(
            name="\u3000 红色\t\t 单鞋\n新款\u3000\u3000 ",
            category=" 女鞋 /\u3000单鞋 ",
            status="  ON_SALE\n",
        )
    )
    assert product.name == "红色 单鞋 新款"
    assert product.category == "女鞋 / 单鞋"
    assert product.status == "on_sale"


def test_whitespace_only_text_is_none():
    product = normalize(raw(name=" \u3000\t\n ", category="", status="\u3000"))
    assert (product.name, product.category, product.status) == (None, None, None)


def test_text_is_nfc_so_decomposed_and_precomposed_accents_are_one_string():
    decomposed, precomposed = "Cafe\u0301 Sneaker", "Café Sneaker"
    assert decomposed != precomposed
    assert normalize(raw(name=decomposed)).name == precomposed
    assert version(name=decomposed) == version(name=precomposed)


def test_brand_code_is_trimmed_and_upper_cased_sku_keeps_its_case():
    product = normalize(raw(brand_code="\u3000 bl\t", sku="  aB-100 \n"))
    assert (product.brand_code, product.sku) == ("BL", "aB-100")


@pytest.mark.parametrize("value", [None, "", "   ", "\u3000\t"])
def test_missing_brand_code_or_sku(value):
    assert rejected(brand_code=value).reason == RejectReason.MISSING_BRAND_CODE
    assert rejected(sku=value).reason == RejectReason.MISSING_SKU


def test_the_key_is_not_part_of_the_version():
    assert version(brand_code="BL", sku="A1") == version(brand_code="XX", sku="B2")
    assert version(id=1, src_updated_at=T0) == version(id=2, src_updated_at=T0 + dt.timedelta(days=1))


def test_missing_or_bad_src_updated_at():
    assert rejected(src_updated_at=None).reason == "missing_src_updated_at"
    assert rejected(src_updated_at="2024-06-01 08:00:00").reason == "bad_src_updated_at"


# --- price -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1299", "1299.00"),
        ("1,299.00", "1299.00"),
        ("1,299", "1299.00"),
        ("1,234,567.5", "1234567.50"),
        ("¥1299.5", "1299.50"),
        ("￥1,299.50", "1299.50"),
        ("$ 12.3", "12.30"),
        ("€0.99", "0.99"),
        ("£5", "5.00"),
        ("  1299.00  ", "1299.00"),
        ("１２９９", "1299.00"),
        ("1.50000", "1.50"),
        ("0", "0.00"),
        ("9999999999.99", "9999999999.99"),
        (1299, "1299.00"),
        (0, "0.00"),
        (1299.0, "1299.00"),
        (0.1, "0.10"),
        (19.99, "19.99"),
        (Decimal("1.5"), "1.50"),
        (Decimal("1299.000"), "1299.00"),
        (Decimal("-0"), "0.00"),
    ],
)
def test_price_forms(value, expected):
    price = normalize(raw(price=value)).price
    assert price == Decimal(expected)
    assert str(price) == expected  # exact and always 2 places


@pytest.mark.parametrize("value", [None, "", "   ", "\u3000"])
def test_no_price_is_none(value):
    assert normalize(raw(price=value)).price is None


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "12a",
        "1.005",
        "0.001",
        "-1",
        "¥-5",
        "-0.01",
        "NaN",
        "Infinity",
        "1e3",
        "+5",
        "12,99",
        "1,2999",
        ",100",
        "1 299",
        "1299元",
        "¥",
        ".5",
        "10000000000",
        "12345678901.00",
        float("nan"),
        float("inf"),
        -1.0,
        -3,
        1.005,
        True,
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("-Infinity"),
        Decimal("-0.01"),
        Decimal("1.001"),
        Decimal("1E+10"),
        Decimal("1E-30"),
        [1299],
    ],
)
def test_bad_prices(value):
    error = rejected(price=value)
    assert error.reason == RejectReason.BAD_PRICE
    assert error.detail.startswith("price ")


def test_price_never_goes_through_float_arithmetic():
    # 0.1 + 0.2 style errors would show up as 0.30000000000000004.
    assert normalize(raw(price="0.30")).price == Decimal("0.30")
    assert normalize(raw(price=0.3)).price == Decimal("0.30")
    assert normalize(raw(price="9999999999.99")).price == Decimal("9999999999.99")


# --- currency ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("cny", "CNY"), (" usd ", "USD"), (None, None), ("", None)])
def test_currency(value, expected):
    assert normalize(raw(currency=value)).currency == expected


@pytest.mark.parametrize("value", ["RMB元", "CN", "CNYY", "¥", "C1Y", "ｃｎｙ", 156])
def test_bad_currency(value):
    assert rejected(currency=value).reason == RejectReason.BAD_CURRENCY


# --- booleans ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [True, 1, "1", "true", "TRUE", "t", "yes", "Y", "y", "on", "On", " 是 ", "是"],
)
def test_true_spellings(value):
    assert normalize(raw(is_active=value)).is_active is True


@pytest.mark.parametrize(
    "value",
    [False, 0, "0", "false", "False", "f", "no", "N", "n", "off", "OFF", "否", "\u3000否\t"],
)
def test_false_spellings(value):
    assert normalize(raw(is_active=value)).is_active is False


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_boolean_is_none(value):
    assert normalize(raw(is_active=value)).is_active is None


@pytest.mark.parametrize("value", ["2", "-1", "maybe", "真", "null", "yess", 2, -1, 1.0, Decimal(1)])
def test_bad_booleans(value):
    error = rejected(is_active=value)
    assert error.reason == RejectReason.BAD_BOOLEAN
    assert error.detail.startswith("is_active ")


# --- attributes --------------------------------------------------------------------------------------


ATTRS = {"color": "红", "size": 37, "tags": ["新款", "夏季"], "spec": {"heel_cm": 3.5, "lined": True}}


@pytest.mark.parametrize(
    "value",
    [
        ATTRS,
        json.dumps(ATTRS, ensure_ascii=False),
        json.dumps(ATTRS),  # \uXXXX escapes
        json.dumps(json.dumps(ATTRS, ensure_ascii=False), ensure_ascii=False),  # JSON-encoded twice
        json.dumps(json.dumps(json.dumps(ATTRS))),  # three times
        "  \n" + json.dumps(ATTRS, indent=4) + "\n ",
    ],
    ids=["dict", "json", "escaped", "double", "triple", "indented"],
)
def test_attribute_forms(value):
    assert normalize(raw(attributes=value)).attributes == ATTRS


def test_double_encoded_attributes_as_the_feed_sends_them():
    product = normalize(raw(attributes='"{\\"color\\": \\"红\\"}"'))
    assert product.attributes == {"color": "红"}
    assert product.attributes_json == '{"color":"红"}'


@pytest.mark.parametrize("value", [None, "", "  ", "null", '""', {}])
def test_no_attributes_is_an_empty_object(value):
    assert normalize(raw(attributes=value)).attributes == {}


def test_attribute_values_keep_their_json_types_and_strings_are_nfc():
    product = normalize(raw(attributes='{"Cafe\\u0301": "e\\u0301", "n": 1.5, "ok": false, "x": null}'))
    assert product.attributes == {"Café": "é", "n": 1.5, "ok": False, "x": None}


@pytest.mark.parametrize(
    "value",
    [
        "{color: 红}",
        '{"a": 1',
        "not json",
        '{"a": NaN}',
        '{"a": Infinity}',
        "[1, 2]",
        '"just text"',
        "42",
        "true",
        json.dumps(json.dumps(json.dumps(json.dumps(ATTRS)))),  # four times is too often
        [("a", 1)],
        42,
        {"a": float("nan")},
        {"a": object()},
        {"é": 1, "e\u0301": 2},  # the same key once NFC-normalized
        "[" * 100_000,
        '{"a":' * 950 + "1" + "}" * 950,
    ],
    ids=[
        "unquoted",
        "truncated",
        "text",
        "nan",
        "infinity",
        "array",
        "string",
        "number",
        "bool",
        "quadruple",
        "list",
        "int",
        "dict-nan",
        "dict-object",
        "dict-nfc-duplicate",
        "deep",
        "deep-object",
    ],
)
def test_bad_attributes(value):
    error = rejected(attributes=value)
    assert error.reason == RejectReason.BAD_ATTRIBUTES
    assert error.detail.startswith("attributes ")


# --- images ------------------------------------------------------------------------------------------


A, B, C = "https://img/a.jpg", "https://img/b.jpg", "https://img/c.jpg"


@pytest.mark.parametrize(
    "value",
    [
        [A, B, C],
        (A, B, C),
        [f" {A} ", "", B, "  ", C, A],
        json.dumps([A, B, C]),
        json.dumps(json.dumps([A, B, C])),
        f' [ "{A}" ,\n "{B}", "{C}", "{B}" ] ',
        f"{A},{B},{C}",
        f"{A}, {B} ,{C},",
        f"{A}\n{B}\r\n{C}\n\n",
        f"{A}，{B}\n{C},{A}",
    ],
)
def test_image_forms(value):
    assert normalize(raw(images=value)).images == (A, B, C)


@pytest.mark.parametrize("value", [None, "", "  ", [], "[]", ",,\n", "null"])
def test_no_images(value):
    product = normalize(raw(images=value))
    assert product.images == ()
    assert product.images_json == "[]"


def test_images_json_keeps_order_and_utf8():
    product = normalize(raw(images=["https://img/鞋/2.jpg", "https://img/鞋/1.jpg"]))
    assert product.images_json == '["https://img/鞋/2.jpg","https://img/鞋/1.jpg"]'


@pytest.mark.parametrize(
    "value",
    ['["a.jpg", 1]', "[a.jpg, b.jpg]", '{"a": "b"}', '"{\\"a\\": \\"b\\"}"', [A, None], [A, 3], 42],
    ids=["number-item", "bad-json", "object", "quoted-object", "none-item", "int-item", "int"],
)
def test_bad_images(value):
    error = rejected(images=value)
    assert error.reason == RejectReason.BAD_IMAGES
    assert error.detail.startswith("images ")


# --- data_version ------------------------------------------------------------------------------------


def test_version_ignores_attribute_key_order_whitespace_and_escapes():
    versions = {
        version(attributes='{"color": "红", "size": 37}'),
        version(attributes='{"size":37,"color":"红"}'),
        version(attributes='{\n  "size" : 37 ,\n  "color" : "\\u7ea2"\n}'),
        version(attributes={"size": 37, "color": "红"}),
        version(attributes='"{\\"color\\": \\"红\\", \\"size\\": 37}"'),
        version(attributes={"size": 37.0, "color": "红"}),
        version(attributes='{"color": "红", "size": 37.0}'),
    }
    assert len(versions) == 1


def test_version_ignores_how_the_price_is_written():
    forms = ["1,299.00", "1299", "¥1299", 1299, 1299.0, Decimal("1299.0"), Decimal("1299.00")]
    assert len({version(price=form) for form in forms}) == 1


def test_version_ignores_how_images_and_booleans_are_written():
    assert version(images=f"{A},{B}") == version(images=[A, B]) == version(images=json.dumps([A, B]))
    assert (
        version(is_active="是") == version(is_active="Y") == version(is_active=1) == version(is_active=True)
    )
    assert version(name=" 单鞋\u3000") == version(name="单鞋")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"price": "1299.00"}, {"price": "1299.01"}),
        ({"attributes": '{"color": "红", "size": 37}'}, {"attributes": '{"color": "黑", "size": 37}'}),
        ({"attributes": '{"size": 37}'}, {"attributes": '{"size": "37"}'}),
        ({"images": [A, B]}, {"images": [B, A]}),
        ({"is_active": "1"}, {"is_active": "0"}),
        ({"is_active": "1"}, {"is_active": None}),
        ({"name": "单鞋"}, {"name": "单 鞋"}),
        ({"currency": "CNY"}, {"currency": "USD"}),
        ({"category": "女鞋"}, {"category": None}),
        ({"status": "on_sale"}, {"status": "off_shelf"}),
        ({"price": None}, {"price": "0"}),
    ],
)
def test_real_changes_change_the_version(before, after):
    assert version(**before) != version(**after)


def test_version_is_the_hash_of_the_stable_business_fields():
    product = normalize(raw(price="1,299.50", attributes='{"b": 1, "a": 2}'))
    expected = stable_json(
        {
            "attributes": {"a": 2, "b": 1},
            "category": "女鞋/单鞋",
            "currency": "CNY",
            "images": ["https://img/1.jpg", "https://img/2.jpg"],
            "is_active": True,
            "name": "单鞋",
            "price": "1299.5",
            "status": "on_sale",
        }
    )
    assert stable_json(product.business_fields()) == expected
    assert product.data_version == content_hash(json.loads(expected))


# --- errors ------------------------------------------------------------------------------------------


HUGE = "x" * 100_000


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("price", HUGE, "bad_price"),
        ("price", "9" * 5_000, "bad_price"),
        ("currency", HUGE, "bad_currency"),
        ("attributes", "{" + HUGE, "bad_attributes"),
        ("attributes", json.dumps([HUGE]), "bad_attributes"),
        ("attributes", {HUGE: float("nan")}, "bad_attributes"),
        ("images", "[" + HUGE, "bad_images"),
        ("images", [HUGE, 1], "bad_images"),
        ("is_active", HUGE, "bad_boolean"),
        ("brand_code", " " * 10_000, "missing_brand_code"),
        ("sku", "\u3000" * 10_000, "missing_sku"),
    ],
)
def test_errors_carry_a_reason_and_a_short_detail_naming_the_field(field, value, reason):
    error = rejected(**{field: value})
    assert error.reason == reason
    assert isinstance(error.reason, RejectReason)
    assert error.detail.startswith(field + " ")
    assert len(error.detail) <= 100
    assert str(error).startswith(reason + ": ")
    assert isinstance(error, ValueError)


def test_detail_shows_the_offending_value():
    assert rejected(price="1.005").detail == "price has over 2 decimals: '1.005'"
    assert rejected(is_active="maybe").detail == "is_active is not a boolean: 'maybe'"
    assert rejected(currency="人民币").detail == "currency is not 3 letters: '人民币'"
    assert rejected(attributes={"é": 1, "e\u0301": 2}).detail == "attributes has a duplicate key: 'é'"
    assert rejected(attributes='{"a": [1.5, NaN]}').detail.startswith("attributes is not valid JSON: ")
    assert rejected(attributes={"a": [float("inf")]}).detail.startswith("attributes holds NaN/Infinity: ")
    long_detail = rejected(price="9" * 500).detail
    assert long_detail.endswith("…")
    assert "9" * 50 in long_detail


def test_reject_codes_are_short_snake_case():
    for reason in RejectReason:
        assert reason.value == reason.value.lower()
        assert reason.value.replace("_", "").isalpha()
        assert len(reason.value) <= 32  # product_etl_rejects.reason
