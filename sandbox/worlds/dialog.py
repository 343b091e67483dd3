"""Synthetic ``people_customer_dialog`` data: realistic Chinese customer-service calls.

Deterministic for a given seed, so the demo, the tests and the benchmark can predict exactly what the
pipeline must produce. Besides ordinary calls the generator plants the cases the pipeline handles on
purpose: calls that move to another group, calls that run past midnight, calls whose ``seq`` numbers
disagree with their times (the source numbers some utterances late), two utterances of one call in the
same second, and bad rows (no call_id, no group_code, empty content, text broken by an earlier decode,
bytes that are not UTF-8).

The world also keeps each call's usable utterances, so tests can compare what the pipeline stored with
what it should have stored, computed from the generator's own records rather than by the pipeline's code.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from include.dialog.schema import people_customer_dialog, source_metadata

CUSTOMER_LINES = [
    "你好，我想查询一下我的订单物流信息。",
    "我上周买的鞋子尺码不合适，可以换货吗？",
    "订单号是多少来着，我找一下。",
    "为什么我的退款还没有到账？",
    "这个优惠券怎么用不了？",
    "能不能帮我改一下收货地址？",
    "好的，谢谢你。",
    "快递一直显示在派送中，已经三天了。",
    "我想投诉一下门店的服务态度。",
    "会员积分可以抵扣现金吗？",
    "颜色和图片上不太一样。",
    "那我什么时候能收到？",
    "可以开发票吗？",
    "行，那就这样吧。",
]
AGENT_LINES = [
    "您好，很高兴为您服务，请问有什么可以帮您？",
    "请您提供一下订单号，我帮您查询。",
    "好的，我这边已经为您登记了。",
    "非常抱歉给您带来不便。",
    "退款一般会在三到五个工作日内原路退回。",
    "换货需要在签收后七天内申请。",
    "我已经帮您修改了收货地址。",
    "请问还有其他问题吗？",
    "感谢您的耐心等待。",
    "这边为您转接到售后专员。",
    "积分可以在下单时直接抵扣。",
    "发票会随包裹一起寄出。",
]
BOT_LINES = ["您好，这里是智能客服小贝。", "正在为您转接人工客服，请稍候。", "请问您要咨询哪类问题？"]
#: The speaker labels of ``dialog_text`` as the README gives them; written out here, not imported from
#: the pipeline, so that the expected text does not come from the code it checks.
SPEAKER_NAMES = {"customer": "客户", "agent": "坐席", "bot": "机器人"}


@dataclass
class DialogWorld:
    """What was generated: the rows and the answers a correct load must give."""

    days: list[dt.date]
    groups: list[str]
    rows: int = 0
    #: call_id -> (owning day, owning group, usable turn count)
    calls: dict[str, tuple[dt.date, str, int]] = field(default_factory=dict)
    #: source ids of rows that must end up in the rejects table
    bad_row_ids: set[int] = field(default_factory=set)
    #: call_id -> its usable source rows, as generated (kept only when ``keep_utterances``)
    utterances: dict[str, list[dict]] = field(default_factory=dict)
    keep_utterances: bool = True

    def expected(self, day: dt.date) -> dict[str, int]:
        owned = [c for c in self.calls.values() if c[0] == day]
        return {"conversations": len(owned), "groups": len({c[1] for c in owned})}

    def turns(self, call_id: str) -> list[dict]:
        """The turns a correct load stores for ``call_id``: its usable utterances in speaking order
        (time, then ``seq``, then id), each as ``{seq, time, speaker, group_code, content}``."""
        ordered = sorted(self.utterances[call_id], key=lambda r: (r["created_at"], r["seq"], r["id"]))
        return [
            {
                "seq": r["seq"],
                "time": r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                "speaker": r["speaker"],
                "group_code": r["group_code"],
                "content": r["content"],
            }
            for r in ordered
        ]

    def dialog_text(self, call_id: str) -> str:
        """The ``dialog_text`` a correct load stores: one ``[HH:MM:SS] speaker: text`` line a turn."""
        return "\n".join(
            f"[{t['time'][11:]}] {SPEAKER_NAMES[t['speaker']]}: {t['content']}" for t in self.turns(call_id)
        )


def group_codes(n: int) -> list[str]:
    return [f"G{i:02d}" for i in range(1, n + 1)]


def generate(
    days: list[dt.date],
    groups: int = 4,
    calls_per_group_day: int = 30,
    turns: tuple[int, int] = (4, 12),
    seed: int = 7,
    edge_cases: bool = True,
    invalid_bytes: bool = True,
    world: DialogWorld | None = None,
) -> Iterator[dict]:
    """Yield source rows (with explicit ids) and fill ``world`` with the expected outcome.

    Without a ``world`` nobody reads the outcome, so the utterances are not kept (the benchmark
    generates millions of rows)."""
    rng = random.Random(seed)
    codes = group_codes(groups)
    world = world if world is not None else DialogWorld(days, codes, keep_utterances=False)
    next_id = 1
    for day in days:
        for g, code in enumerate(codes):
            for n in range(calls_per_group_day):
                call_id = f"C{day:%Y%m%d}-{code}-{n:05d}"
                start = dt.datetime.combine(day, dt.time(8)) + dt.timedelta(seconds=rng.randrange(13 * 3600))
                kind = "plain"
                if edge_cases and n == 0:
                    kind = "midnight"
                    start = dt.datetime.combine(day, dt.time(23, 59)) + dt.timedelta(seconds=g)
                elif edge_cases and n == 1:
                    kind = "transfer"
                count = rng.randint(*turns)
                bad_seq = {2: "   ", 3: "订单\ufffd\ufffd号"}.get(n) if edge_cases else None
                if edge_cases and invalid_bytes and n == 4:
                    bad_seq = "退款".encode("gbk")  # legacy GBK bytes: not UTF-8
                at = start
                call_rows: list[dict] = []
                for seq in range(1, count + 1):
                    speaker = "bot" if seq == 1 else ("customer" if seq % 2 == 0 else "agent")
                    lines = {"bot": BOT_LINES, "customer": CUSTOMER_LINES, "agent": AGENT_LINES}[speaker]
                    row_group = (
                        codes[(g + 1) % len(codes)] if kind == "transfer" and seq > count // 2 else code
                    )
                    content: str | bytes = rng.choice(lines)
                    if bad_seq is not None and seq == 2:
                        content = bad_seq
                        world.bad_row_ids.add(next_id)
                    at += dt.timedelta(seconds=30 if kind == "midnight" else rng.randint(3, 40))
                    call_rows.append(
                        {
                            "id": next_id,
                            "call_id": call_id,
                            "group_code": row_group,
                            "speaker": speaker,
                            "content": content,
                            "seq": seq,
                            "created_at": at,
                        }
                    )
                    next_id += 1
                if edge_cases:
                    _plant_order_cases(n, call_rows)
                usable = [r for r in call_rows if r["id"] not in world.bad_row_ids]
                world.calls[call_id] = (day, code, len(usable))
                if world.keep_utterances:
                    world.utterances[call_id] = usable
                yield from call_rows
        if edge_cases:
            noon = dt.datetime.combine(day, dt.time(12))
            for bad in (
                {"call_id": None, "group_code": codes[0]},
                {"call_id": f"C{day:%Y%m%d}-X", "group_code": None},
            ):
                world.bad_row_ids.add(next_id)
                yield {
                    "id": next_id,
                    **bad,
                    "speaker": "customer",
                    "content": "孤立的一句话",
                    "seq": 1,
                    "created_at": noon,
                }
                next_id += 1
    world.rows = next_id - 1


def _plant_order_cases(n: int, rows: list[dict]) -> None:
    """Make the ``seq`` numbers of call ``n`` of a group and day disagree with time, as a source that
    numbers some utterances late does. Call 5: the first two utterances swap their ``seq``, so the one
    said first carries ``seq`` 2. Call 6: the second and third utterances are said in the same second
    and swap their ``seq``, so ``seq`` (not the id) decides their order."""
    if n == 5 and len(rows) >= 2:
        rows[0]["seq"], rows[1]["seq"] = rows[1]["seq"], rows[0]["seq"]
    elif n == 6 and len(rows) >= 3:
        rows[2]["created_at"] = rows[1]["created_at"]
        rows[1]["seq"], rows[2]["seq"] = rows[2]["seq"], rows[1]["seq"]


def fill_source(engine: sa.Engine, rows: Iterator[dict], batch: int = 5000) -> int:
    """Create ``people_customer_dialog`` if missing and insert ``rows`` in batches."""
    source_metadata.create_all(engine, checkfirst=True)
    total = 0
    buffer: list[dict] = []
    with engine.begin() as conn:
        for row in rows:
            buffer.append(row)
            if len(buffer) >= batch:
                conn.execute(people_customer_dialog.insert(), buffer)
                total += len(buffer)
                buffer.clear()
        if buffer:
            conn.execute(people_customer_dialog.insert(), buffer)
            total += len(buffer)
    return total


def build_world(engine: sa.Engine, days: list[dt.date], **kwargs) -> DialogWorld:
    """Fill a source database and return what a correct pipeline must produce from it."""
    world = DialogWorld(days, group_codes(kwargs.get("groups", 4)))
    fill_source(engine, generate(days, world=world, **kwargs))
    return world
