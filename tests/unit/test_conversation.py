"""Assembling a call's utterances into one conversation row."""

from __future__ import annotations

import datetime as dt
import json

from include.dialog.conversation import Utterance, assemble, decode_content, owner_of, speaking_order

T0 = dt.datetime(2024, 6, 1, 10, 0, 0)


def utt(id_, seq, content, *, group="G01", at=None, speaker="customer", call="C1"):
    return Utterance(id_, call, group, speaker, content, seq, at or T0 + dt.timedelta(seconds=seq))


def test_turns_follow_time_then_seq_whatever_the_input_order():
    rows = [utt(3, 3, "第三句", speaker="agent"), utt(1, 1, "您好", speaker="bot"), utt(2, 2, "我想退货")]
    conversation, rejects = assemble(speaking_order(rows))
    assert rejects == []
    turns = json.loads(conversation["turns_json"])
    assert [t["content"] for t in turns] == ["您好", "我想退货", "第三句"]
    assert conversation["turn_count"] == 3
    assert conversation["dialog_text"].splitlines() == [
        "[10:00:01] 机器人: 您好",
        "[10:00:02] 客户: 我想退货",
        "[10:00:03] 坐席: 第三句",
    ]
    assert (conversation["first_time"], conversation["last_time"]) == (
        T0 + dt.timedelta(seconds=1),
        T0 + dt.timedelta(seconds=3),
    )
    assert "\\u" not in conversation["turns_json"]  # Chinese kept as UTF-8, not escaped


def test_bad_utterances_are_rejected_and_the_rest_kept():
    rows = [
        utt(1, 1, "你好"),
        utt(2, 2, "  "),
        utt(3, 3, "退款".encode("gbk")),
        utt(4, 4, "订\ufffd单"),
        utt(5, 5, None),
        utt(6, 6, "好的".encode()),
    ]
    conversation, rejects = assemble(rows)
    assert [t["content"] for t in json.loads(conversation["turns_json"])] == ["你好", "好的"]
    assert [(r.source_id, r.reason) for r in rejects] == [
        (2, "empty_content"),
        (3, "undecodable_text"),
        (4, "undecodable_text"),
        (5, "empty_content"),
    ]
    assert "invalid" in rejects[1].detail


def test_a_call_without_usable_utterance_yields_no_conversation():
    conversation, rejects = assemble([utt(1, 1, ""), utt(2, 2, b"\xff\xfe")])
    assert conversation is None
    assert len(rejects) == 2


def test_owner_is_the_first_utterance_across_groups_and_midnight():
    late = dt.datetime(2024, 6, 1, 23, 59, 50)
    rows = [
        utt(9, 3, "c", group="G02", at=late + dt.timedelta(seconds=30)),
        utt(7, 1, "a", group="G01", at=late),
        utt(8, 2, "b", group="G02", at=late + dt.timedelta(seconds=15)),
    ]
    rows = speaking_order(rows)
    assert owner_of(rows) == (dt.date(2024, 6, 1), "G01")
    conversation, _ = assemble(rows)
    assert conversation["group_code"] == "G01"
    assert conversation["dialog_date"] == dt.date(2024, 6, 1)
    assert [t["group_code"] for t in json.loads(conversation["turns_json"])] == ["G01", "G02", "G02"]


def test_decode_content_trims_and_accepts_utf8_bytes():
    assert decode_content("  你好 \n") == ("你好", None)
    assert decode_content("你好".encode()) == ("你好", None)
    assert decode_content(b"\xe4\xbd")[0] is None


def test_time_decides_the_order_where_seq_disagrees_then_seq_then_id():
    """The README's rule: turns in order of time, then seq, then source id. Here the source numbered
    an utterance late (seq 1 said after seq 2), two utterances share a second with their ids in the
    opposite order of their seq, and two more share both second and seq."""
    at = T0 + dt.timedelta(seconds=30)
    rows = [
        utt(10, 1, "稍后补记的开场白", group="G02", at=T0 + dt.timedelta(seconds=20)),
        utt(11, 2, "最先说的话", at=T0 + dt.timedelta(seconds=10)),
        utt(13, 3, "同一秒序号小", at=at),
        utt(12, 4, "同一秒序号大", at=at),
        utt(15, 5, "同秒同序号编号大", at=at + dt.timedelta(seconds=5)),
        utt(14, 5, "同秒同序号编号小", at=at + dt.timedelta(seconds=5)),
    ]
    ordered = speaking_order(rows)
    assert [u.id for u in ordered] == [11, 10, 13, 12, 14, 15]
    assert owner_of(ordered) == (dt.date(2024, 6, 1), "G01")  # the group of the utterance said first
    conversation, _ = assemble(ordered)
    assert [t["seq"] for t in json.loads(conversation["turns_json"])] == [2, 1, 3, 4, 5, 5]
    assert conversation["dialog_text"].splitlines()[:2] == [
        "[10:00:10] 客户: 最先说的话",
        "[10:00:20] 客户: 稍后补记的开场白",
    ]
    assert (conversation["group_code"], conversation["first_time"], conversation["last_time"]) == (
        "G01",
        T0 + dt.timedelta(seconds=10),
        at + dt.timedelta(seconds=5),
    )
