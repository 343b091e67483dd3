"""A synthetic Callio world: tenants with their accounts, customers, calls, staff and groups.

Deterministic for a seed, so the demo, the tests and the benchmark know exactly what a correct load
holds. Records have the shapes the real API serves (``API_FACTS.md``), loose spellings included:
a call's ``fromUser`` / ``fromGroup`` as an object, as JSON text, as a Python ``repr`` or as JSON
encoded twice; custom fields keeping their value under ``val``, ``value``, ``values``, ``text`` or
``name``; unanswered calls with ``answerTime`` 0 or missing.

Besides ordinary records each tenant holds the cases a client must survive:

* a burst: ``burst`` customers updated and ``burst`` calls created in one and the same millisecond
  (:attr:`Tenant.burst_ms`; a bulk reassignment, a call history imported at once), far more than a
  page, so ties cross page and slice boundaries;
* malformed records (with ``malformed=True``): a customer and a call without ``_id``, a sort time sent
  as numeric text (the search index coerces it, the document keeps the text), optional times that are
  not numbers at all.

:meth:`CallioWorld.advance` moves the world forward between runs: customers updated with a newer
``updateTime``, new calls, staff renamed. Records are never edited in place, only replaced, so a
server may keep serving an older list while a change is made.

Generation is a plain loop over shared pieces (name pools, staff references, custom-field variants),
a few microseconds per record: ten tenants of 20,000 customers and 50,000 calls take two to three
seconds and about half a gigabyte.
"""

from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
DEFAULT_END_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: a fixed "now", so worlds are reproducible

Record = dict[str, Any]

FAMILY_NAMES = [
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
    "Ngô", "Dương", "Lý",
]  # fmt: skip
MIDDLE_NAMES = ["Văn", "Thị", "Minh", "Ngọc", "Thanh", "Hữu", "Đức", "Thu", "Quang", "Hoài", "Bảo", "Gia"]
GIVEN_NAMES = [
    "Lan", "Hương", "Tuấn", "Dũng", "Hùng", "Mai", "Linh", "Trang", "Phương", "Anh", "Hải", "Hà", "Nam",
    "Long", "Thảo", "Yến", "Quân", "Khoa", "Vy", "Nhung", "Bảo", "Đạt", "Thư", "Ngân", "Sơn", "Tâm",
]  # fmt: skip
GROUP_NAMES = [
    "Kinh doanh Hà Nội", "Chăm sóc khách hàng", "Telesale Miền Nam", "Tổng đài Đà Nẵng", "Hỗ trợ kỹ thuật",
    "Thu hồi công nợ", "Khách hàng doanh nghiệp", "Đặt lịch hẹn",
]  # fmt: skip
TENANT_NAMES = [
    "anphat", "binhminh", "hoanglong", "sonha", "thanhcong", "vietnhat", "hailong", "ngocdiep",
    "phuongdong", "truongthinh",
]  # fmt: skip
CUSTOM_FIELD_KEYS = ["nguon", "tinh_thanh", "san_pham", "muc_do_quan_tam", "ghi_chu"]
CUSTOM_FIELD_VALUES = [
    "Facebook", "Zalo", "Website", "Hội chợ", "Hà Nội", "TP. Hồ Chí Minh", "Đà Nẵng", "Cần Thơ",
    "Bảo hiểm sức khỏe", "Vay tiêu dùng", "Khóa học tiếng Anh", "Nóng", "Ấm", "Lạnh",
    "Gọi lại sau 17h", "Đã gửi báo giá",
]  # fmt: skip
MOBILE_PREFIXES = "090 091 093 094 096 097 098 032 033 034 035 070 077 086".split()
NO_ANSWER_CAUSES = ["NO_ANSWER", "USER_BUSY", "ORIGINATOR_CANCEL", "CALL_REJECTED", "NO_USER_RESPONSE"]
ROLES = ["agent", "agent", "agent", "agent", "supervisor"]

_HOUR_MS = 3_600_000
# Every full name once: records share these strings instead of each holding its own.
_FULL_NAMES = [f"{f} {m} {g}" for f in FAMILY_NAMES for m in MIDDLE_NAMES for g in GIVEN_NAMES]
_MAX_CREATE_AGE_MS = 180 * DAY_MS  # a customer is updated at most half a year after being created


@dataclass
class Tenant:
    """One Callio account's data. ``version`` grows with every change, so a server can re-index."""

    name: str
    email: str
    password: str = field(repr=False)
    groups: list[Record] = field(repr=False)
    staff: list[Record] = field(repr=False)
    customers: list[Record] = field(repr=False)
    calls: list[Record] = field(repr=False)
    burst_ms: int
    version: int = 0
    ids_issued: int = field(default=0, repr=False)

    def account(self) -> dict[str, str]:
        """The tenant's entry of an accounts file: ``{tenant, email, password}``."""
        return {"tenant": self.name, "email": self.email, "password": self.password}


@dataclass
class Change:
    """What one :meth:`CallioWorld.advance` did, per tenant: ids updated, added and renamed."""

    now_ms: int
    customers: dict[str, list[str]] = field(default_factory=dict)
    calls: dict[str, list[str]] = field(default_factory=dict)
    staff: dict[str, list[str]] = field(default_factory=dict)


def sandbox_password(seed: int, tenant: str) -> str:
    """A tenant's password depends on the seed and its name only, not on the world's size or dates, so
    the default ``callio_api`` connection's accounts match every simulator started with the same seed."""
    return f"sandbox-{random.Random(f'{seed}/password/{tenant}').getrandbits(48):012x}"


def tenant_names(count: int) -> list[str]:
    """``count`` tenant codes: business-like names, numbered once the list runs out."""
    size = len(TENANT_NAMES)
    return [TENANT_NAMES[i % size] + (str(i // size) if i >= size else "") for i in range(count)]


def ascii_slug(text: str) -> str:
    """``"Đặng Thu Hà"`` -> ``"dang.thu.ha"``: Vietnamese without its diacritics, for e-mail addresses."""
    text = text.replace("Đ", "D").replace("đ", "d")
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ".".join(plain.lower().split())


def time_value(value: Any) -> int | None:
    """A time as the API's search index reads it: a number, or numeric text (coerced); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class CallioWorld:
    """Tenants generated from ``seed``; tenant *i* depends only on the seed and *i*, not on how many
    tenants there are. Customers' ``updateTime`` and calls' ``createTime`` fall in
    ``[end_ms - span_ms, end_ms]``."""

    def __init__(
        self,
        tenants: int = 3,
        customers: int = 2_000,
        calls: int = 5_000,
        *,
        span_ms: int = 30 * DAY_MS,
        end_ms: int = DEFAULT_END_MS,
        burst: int = 2_500,
        staff: int | None = None,
        malformed: bool = True,
        seed: int = 1,
    ) -> None:
        if span_ms < 1_000 or tenants < 1 or customers < 0 or calls < 0 or (staff is not None and staff < 1):
            raise ValueError("a world needs tenants, staff, and a span of at least one second")
        self.seed = seed
        self.start_ms = end_ms - span_ms
        self.end_ms = end_ms
        self._steps = 0
        staff_count = staff if staff is not None else max(3, min(50, customers // 400 + 3))
        self.tenants: dict[str, Tenant] = {}
        for index, name in enumerate(tenant_names(tenants)):
            generator = _TenantGenerator(name, index, seed, self.start_ms, end_ms)
            self.tenants[name] = generator.build(customers, calls, staff_count, burst, malformed)

    def accounts(self) -> list[dict[str, str]]:
        """Every tenant's ``{tenant, email, password}``, as the pipeline's accounts setting takes them."""
        return [tenant.account() for tenant in self.tenants.values()]

    def advance(
        self, now_ms: int | None = None, *, customers: int = 50, calls: int = 100, renames: int = 1
    ) -> Change:
        """Move every tenant to ``now_ms`` (default: one hour after the last change): ``customers``
        customers get an ``updateTime`` in ``(previous end, now_ms]`` (half of them reassigned),
        ``calls`` new calls are created in that interval, ``renames`` staff members get a new name.
        Deterministic: the same world advanced the same way gives the same records."""
        now_ms = self.end_ms + _HOUR_MS if now_ms is None else now_ms
        if now_ms <= self.end_ms:
            raise ValueError("a world only moves forward")
        self._steps += 1
        change = Change(now_ms)
        for index, tenant in enumerate(self.tenants.values()):
            rng = random.Random(f"{self.seed}/advance/{self._steps}/{index}")
            generator = _TenantGenerator(tenant.name, index, self.seed, self.end_ms + 1, now_ms, rng=rng)
            generator.adopt(tenant)
            change.customers[tenant.name] = generator.update_customers(tenant, customers)
            change.calls[tenant.name] = generator.add_calls(tenant, calls)
            change.staff[tenant.name] = generator.rename_staff(tenant, renames, now_ms)
            tenant.ids_issued = generator.sequence
            tenant.version += 1
        self.end_ms = now_ms
        return change


class _TenantGenerator:
    """Builds (or changes) one tenant's records from its own random stream, times in ``[lo, hi]``."""

    def __init__(
        self, name: str, index: int, seed: int, lo: int, hi: int, rng: random.Random | None = None
    ) -> None:
        self.name = name
        self.seed = seed
        self.rng = rng or random.Random(f"{seed}/tenant/{index}")
        self.lo = lo
        self.hi = hi
        self.machine = (0x5A17C3 + index * 7919) & 0xFFFFFF
        self.sequence = 0
        self.groups: list[Record] = []
        self.staff: list[Record] = []

    # --- identifiers and pieces ------------------------------------------------------------------

    def object_id(self, at_ms: int) -> str:
        """A MongoDB-style id: creation second, this tenant's "machine", a counter (unique per tenant)."""
        self.sequence += 1
        return f"{at_ms // 1000:08x}{self.machine:06x}{self.sequence:010x}"

    def person_name(self) -> str:
        return _FULL_NAMES[int(self.rng.random() * len(_FULL_NAMES))]

    def phone(self) -> str:
        return f"{self.rng.choice(MOBILE_PREFIXES)}{self.rng.randrange(10_000_000):07d}"

    def custom_field_variants(self) -> list[list[Record]]:
        """Custom-field lists in every spelling the API uses, shared by many customers."""
        rng, variants = self.rng, [[]]
        for _ in range(63):
            fields = []
            for key in rng.sample(CUSTOM_FIELD_KEYS, rng.randint(1, 3)):
                value = rng.choice(CUSTOM_FIELD_VALUES)
                form = rng.choice(["val", "val", "value", "values", "text", "name"])
                fields.append({"key": key, form: [value] if form == "values" else value})
            variants.append(fields)
        return variants

    def unique_staff_name(self, taken: set[str]) -> str:
        name = self.person_name()
        while name in taken:  # staff are merged on (tenant, name) downstream: keep names distinct
            name = self.person_name()
        taken.add(name)
        return name

    # --- a new tenant ----------------------------------------------------------------------------

    def build(self, customers: int, calls: int, staff: int, burst: int, malformed: bool) -> Tenant:
        rng = self.rng
        created = self.lo - 400 * DAY_MS
        for name in GROUP_NAMES[: max(2, min(len(GROUP_NAMES), staff // 6))]:
            at = created + rng.randrange(30 * DAY_MS)
            self.groups.append(
                {"_id": self.object_id(at), "name": name, "createTime": at, "updateTime": at, "type": "sale"}
            )
        taken: set[str] = set()
        for number in range(staff):
            at = created + rng.randrange(300 * DAY_MS)
            name = self.unique_staff_name(taken)
            self.staff.append(
                {
                    "_id": self.object_id(at),
                    "email": f"{ascii_slug(name)}.{number}@{self.name}.vn",
                    "name": name,
                    "role": "admin" if number == 0 else rng.choice(ROLES),
                    "ext": str(101 + number),
                    "active": rng.random() > 0.05,
                    "createTime": at,
                    "updateTime": at + rng.randrange(60 * DAY_MS),
                    "group": rng.choice(self.groups)["_id"],
                }
            )
        burst_ms = max(self.lo, (self.lo + (self.hi - self.lo) * 2 // 3) // _HOUR_MS * _HOUR_MS)
        customer_list = self.customers(customers, min(burst, customers // 2), burst_ms)
        call_list = self.calls(calls, min(burst, calls // 2), burst_ms, customer_list)
        if malformed and customers >= 10 and calls >= 10:
            _break_some(customer_list, call_list)
        return Tenant(
            name=self.name,
            email=f"admin@{self.name}.vn",
            password=sandbox_password(self.seed, self.name),
            groups=self.groups,
            staff=self.staff,
            customers=customer_list,
            calls=call_list,
            burst_ms=burst_ms,
            ids_issued=self.sequence,
        )

    def adopt(self, tenant: Tenant) -> None:
        """Continue an existing tenant: its staff and groups, its id counter."""
        self.groups, self.staff = tenant.groups, tenant.staff
        self.sequence = tenant.ids_issued

    def staff_refs(self) -> list[tuple[Record, Record]]:
        """Per staff member: the customer's ``user`` object and the call's ``fromUser`` object."""
        return [
            ({"_id": s["_id"], "name": s["name"], "group": s["group"]}, {"_id": s["_id"], "name": s["name"]})
            for s in self.staff
        ]

    def customers(self, count: int, burst: int, burst_ms: int) -> list[Record]:
        rand, lo, span = self.rng.random, self.lo, self.hi - self.lo + 1
        users = [user for user, _ in self.staff_refs()]
        variants = self.custom_field_variants()
        names, prefixes = _FULL_NAMES, MOBILE_PREFIXES
        records = []
        for number in range(count):
            updated = burst_ms if number < burst else lo + int(rand() * span)
            created = updated - int(rand() * _MAX_CREATE_AGE_MS) if rand() > 0.1 else updated
            record: Record = {
                "_id": self.object_id(created),
                "name": names[int(rand() * len(names))],
                "phone": f"{prefixes[int(rand() * len(prefixes))]}{int(rand() * 10_000_000):07d}",
                "createTime": created,
                "updateTime": updated,
            }
            if rand() < 0.85:
                record["assignedTime"] = created + int(rand() * (updated - created + 1))
                record["user"] = users[int(rand() * len(users))]
            elif rand() < 0.5:
                record["assignedTime"] = 0
                record["user"] = None
            record["customFields"] = variants[int(rand() * len(variants))]
            records.append(record)
        return records

    def calls(self, count: int, burst: int, burst_ms: int, customers: list[Record]) -> list[Record]:
        rand, lo, span = self.rng.random, self.lo, self.hi - self.lo + 1
        users = [self.reference_forms(user) for _, user in self.staff_refs()]
        groups = [self.reference_forms({"_id": g["_id"]}) for g in self.groups]
        group_of = [next(i for i, g in enumerate(self.groups) if g["_id"] == s["group"]) for s in self.staff]
        extensions = [s["ext"] for s in self.staff]
        phones = [c["phone"] for c in customers] or [self.phone()]
        hotline = f"1900{self.rng.randrange(10_000):04d}"
        records = []
        for number in range(count):
            created = burst_ms if number < burst else lo + int(rand() * span)
            staff = int(rand() * len(extensions))
            phone = phones[int(rand() * len(phones))]
            outbound = rand() < 0.6
            answered = rand() < 0.7
            start = created + int(rand() * 3_000)
            ring = 1_000 + int(rand() * 30_000)
            talk = int(rand() * 900_000) if answered else 0
            end = start + ring + talk
            record: Record = {
                "_id": self.object_id(created),
                "chargeTime": end,
                "createTime": created,
                "direction": "outbound" if outbound else "inbound",
                "fromNumber": extensions[staff] if outbound else phone,
                "toNumber": phone if outbound else hotline,
                "startTime": start,
                "endTime": end,
                "duration": (end - start) // 1000,
                "billDuration": talk // 1000,
                "hangupCause": "NORMAL_CLEARING" if answered else NO_ANSWER_CAUSES[int(rand() * 5)],
            }
            if answered:
                record["answerTime"] = start + ring
            elif rand() < 0.5:
                record["answerTime"] = 0
            if outbound or answered:
                forms = users[staff]
                record["fromUser"] = forms[int(rand() * len(forms))]
                forms = groups[group_of[staff]]
                record["fromGroup"] = forms[int(rand() * len(forms))]
            records.append(record)
        return records

    @staticmethod
    def reference_forms(value: Record) -> list[Any]:
        """A reference as the API sends it, weighted: mostly the object, else serialized text."""
        text = json.dumps(value, ensure_ascii=False)
        return [value] * 7 + [text, text, repr(value), repr(value), json.dumps(text, ensure_ascii=False)]

    # --- changes ---------------------------------------------------------------------------------

    def update_customers(self, tenant: Tenant, count: int) -> list[str]:
        rng, customers = self.rng, tenant.customers
        refs = self.staff_refs()
        candidates = [i for i, c in enumerate(customers) if "_id" in c and isinstance(c["updateTime"], int)]
        ids = []
        for index in sorted(rng.sample(candidates, min(count, len(candidates)))):
            updated = self.lo + rng.randrange(self.hi - self.lo + 1)
            record = {**customers[index], "updateTime": updated}
            if rng.random() < 0.5:
                record["user"], _ = refs[rng.randrange(len(refs))]
                record["assignedTime"] = updated
            customers[index] = record
            ids.append(record["_id"])
        return ids

    def add_calls(self, tenant: Tenant, count: int) -> list[str]:
        added = self.calls(count, 0, self.lo, tenant.customers)
        tenant.calls.extend(added)
        return [call["_id"] for call in added]

    def rename_staff(self, tenant: Tenant, count: int, now_ms: int) -> list[str]:
        taken = {s["name"] for s in tenant.staff}
        ids = []
        for index in sorted(self.rng.sample(range(len(tenant.staff)), min(count, len(tenant.staff)))):
            tenant.staff[index] = {
                **tenant.staff[index],
                "name": self.unique_staff_name(taken),
                "updateTime": now_ms,
            }
            ids.append(tenant.staff[index]["_id"])
        return ids


def _break_some(customers: list[Record], calls: list[Record]) -> None:
    """Plant the malformed records, away from the burst (which fills the lists' first entries)."""
    customers[-1] = {k: v for k, v in customers[-1].items() if k != "_id"}
    customers[-2] = {**customers[-2], "updateTime": str(customers[-2]["updateTime"])}
    customers[-3] = {**customers[-3], "assignedTime": "N/A", "createTime": "không rõ"}
    calls[-1] = {k: v for k, v in calls[-1].items() if k != "_id"}
    calls[-2] = {**calls[-2], "createTime": str(calls[-2]["createTime"])}
    calls[-3] = {**calls[-3], "startTime": "", "chargeTime": "abc"}
