#!/usr/bin/env python3
"""Hand-made edge cases of the differential check, as JSON lines for `fluxo produce --file`.

edge_cases.py prices|ledger > FILE. Symbols start with EDGE, accounts with edge-, so they never
meet the simulator's. Every case says what fluxo does with it; the check only asserts that the
peers do the same.
"""
import sys
import uuid

T0 = 1796130000000  # 2026-12-01T13:00:00Z
S, M = 1000, 60_000


def q(symbol, n, price, t):
    return {"event_id": f"{symbol}-{n}", "symbol": symbol, "price": price,
            "currency": "BRL", "source": "edge", "event_time": t}


def prices():
    out = []
    # a rise of exactly 10%: the level is 110.00000000, the quote reaches it: an alert
    out += [q("EDGEEXACT", 1, "100.00000000", T0), q("EDGEEXACT", 2, "110.00000000", T0 + M)]
    # one unit short of 10%: no alert
    out += [q("EDGENEAR", 1, "100.00000000", T0), q("EDGENEAR", 2, "109.99999999", T0 + M)]
    # late: the newest quote is T0+40s, so T0+5s is behind the watermark (T0+10s) and dropped;
    # T0+15s is out of order but within the lateness and becomes the low
    out += [q("EDGELATE", 1, "50.00000000", T0), q("EDGELATE", 2, "52.00000000", T0 + 40 * S),
            q("EDGELATE", 3, "10.00000000", T0 + 5 * S), q("EDGELATE", 4, "40.00000000", T0 + 15 * S),
            q("EDGELATE", 5, "44.00000000", T0 + 50 * S)]
    # out of order within the lateness: evaluated in event-time order, alert from the low 20
    out += [q("EDGEOOO", 1, "25.00000000", T0 + 20 * S), q("EDGEOOO", 2, "20.00000000", T0),
            q("EDGEOOO", 3, "22.50000000", T0 + 10 * S), q("EDGEOOO", 4, "22.00000000", T0 + 10 * S)]
    # a duplicated quote (same event id twice): fluxo does not dedup quotes
    out += [q("EDGEDUP", 1, "10.00000000", T0), q("EDGEDUP", 2, "11.50000000", T0 + S),
            q("EDGEDUP", 2, "11.50000000", T0 + S)]
    # cooldown: +12% alerts; +15% within 5 min does not (needs 12 + 10); +23% does; after the
    # cooldown +11% alerts again
    out += [q("EDGECOOL", 1, "100.00000000", T0), q("EDGECOOL", 2, "112.00000000", T0 + M),
            q("EDGECOOL", 3, "115.00000000", T0 + 2 * M), q("EDGECOOL", 4, "123.00000000", T0 + 3 * M),
            q("EDGECOOL", 5, "100.00000000", T0 + 9 * M), q("EDGECOOL", 6, "111.00000000", T0 + 10 * M)]
    # the window: the low leaves it 5 min + 1 ms later, so +12% then compares with itself
    out += [q("EDGEWIN", 1, "100.00000000", T0), q("EDGEWIN", 2, "105.00000000", T0 + 4 * M),
            q("EDGEWIN", 3, "112.00000000", T0 + 5 * M + 1)]
    # equal event times, and a price with all 8 places, change rounded to 4 places
    out += [q("EDGETIE", 1, "3.33333333", T0), q("EDGETIE", 2, "3.00000001", T0),
            q("EDGETIE", 3, "3.66666667", T0), q("EDGETIE", 4, "3.70000003", T0 + S)]
    return out


def e(account, n, kind, amount, t, currency="BRL", entry_id=None):
    eid = entry_id if entry_id is not None else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{account}/{n}"))
    return {"entry_id": eid, "account_id": account, "kind": kind, "amount": amount,
            "currency": currency, "occurred_at": t, "description": "edge"}


def ledger():
    out = []
    mid = 1796526000000  # 2026-12-06T03:00:00Z = midnight in Sao Paulo (UTC-3, no DST since 2019)
    a = "edge-midnight"
    out += [e(a, 1, "CREDIT", "100.00", mid - 1), e(a, 2, "DEBIT", "30.50", mid),
            e(a, 3, "CREDIT", "0.01", mid + 1), e(a, 4, "CREDIT", "5.00", mid - 3 * 3600_000)]
    # duplicates: the same id twice, and again in upper case (the same UUID)
    a = "edge-dup"
    dup = str(uuid.uuid5(uuid.NAMESPACE_URL, "edge-dup/1"))
    out += [e(a, 1, "CREDIT", "10.00", mid + 1000, entry_id=dup),
            e(a, 2, "CREDIT", "10.00", mid + 2000, entry_id=dup),
            e(a, 3, "DEBIT", "99.00", mid + 3000, entry_id=dup.upper()),
            e(a, 4, "DEBIT", "1.25", mid + 4000)]
    # dropped: negative, zero, another currency, lower-case kind, nil and non-UUID ids, no id
    a = "edge-invalid"
    out += [e(a, 1, "CREDIT", "-5.00", mid), e(a, 2, "CREDIT", "0.00", mid),
            e(a, 3, "CREDIT", "7.00", mid, currency="USD"), e(a, 4, "credit", "7.00", mid),
            e(a, 5, "CREDIT", "7.00", mid, entry_id="00000000-0000-0000-0000-000000000000"),
            e(a, 6, "CREDIT", "7.00", mid, entry_id="not-a-uuid"),
            e(a, 7, "CREDIT", "8.00", mid)]
    nid = e(a, 8, "CREDIT", "9.00", mid)
    nid["entry_id"] = None
    out.append(nid)
    # when Sao Paulo still had summer time (UTC-2): 2019-01-15T02:30Z is 00:30 on the 15th
    # there (23:30 on the 14th at UTC-3); and the night summer time began (2018-11-04)
    a = "edge-dst"
    out += [e(a, 1, "CREDIT", "1.00", 1547519400000), e(a, 2, "CREDIT", "2.00", 1541298600000),
            e(a, 3, "DEBIT", "3.00", 1541301000000)]
    # the dedup horizon: 35 days back is accepted, 36 is too late
    a = "edge-horizon"
    day = 86_400_000
    out += [e(a, 1, "CREDIT", "1.00", mid + 12 * 3600_000), e(a, 2, "CREDIT", "2.00", mid + 12 * 3600_000 - 35 * day),
            e(a, 3, "CREDIT", "4.00", mid + 12 * 3600_000 - 36 * day)]
    # large amounts near decimal(18, 2)
    a = "edge-large"
    out += [e(a, 1, "CREDIT", "9999999999999999.99", mid), e(a, 2, "CREDIT", "0.01", mid + 1),
            e(a, 3, "DEBIT", "1234567890123.45", mid + 2)]
    return out


if __name__ == "__main__":
    import json
    for r in {"prices": prices, "ledger": ledger}[sys.argv[1]]():
        print(json.dumps(r))
