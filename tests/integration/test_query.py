"""Querying the log (GET /v1/databases/{db}/events with filters, POST /v1/databases/{db}/query),
listing streams (GET /v1/databases/{db}/streams) and asOf / asOfTime on stream reads.

Most results are checked against a Python re-implementation of the filters (Model below) over
the whole log read back without filters, and every query is paged to its end (following `next`
until `hasMore` is false) so that gaps and repeats between pages are caught too."""
import datetime
import random
import re
import threading
import time
import urllib.parse

from harness import Server, check, expect_error, quote, wait_until

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
US = datetime.timedelta(microseconds=1)
TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                     r"([Zz]|[+-]\d{2}:\d{2})$")
EVENT_KEYS = {"id", "stream", "type", "data", "metadata", "tags", "time", "recorded",
              "position", "version", "hash"}
STREAM_ROW_KEYS = {"stream", "version", "firstPosition", "lastPosition", "bytes", "created",
                   "updated"}
QUERY_KEYS = {"events", "head", "hasMore", "next"}
DEFAULT_LIMIT = 100

# ---------------------------------------------------------------- times


def parse_us(s):
    """RFC 3339 text -> microseconds since the epoch (UTC)."""
    m = TIME_RE.match(s)
    check(m is not None, f"not an RFC 3339 time: {s!r}")
    y, mo, d, h, mi, se = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    dt = datetime.datetime(y, mo, d, h, mi, se, tzinfo=datetime.timezone.utc)
    tz = m.group(8)
    if tz not in ("Z", "z"):
        off = int(tz[1:3]) * 60 + int(tz[4:6])
        dt -= datetime.timedelta(minutes=off if tz[0] == "+" else -off)
    return (dt - EPOCH) // US + int((frac + "000000")[:6])


def fmt_us(us, offset_min=0):
    """Microseconds since the epoch -> RFC 3339 with 6 fraction digits, in the given offset."""
    dt = EPOCH + datetime.timedelta(microseconds=us + offset_min * 60_000_000)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%06d" % dt.microsecond
    if offset_min == 0:
        return base + "Z"
    sign = "+" if offset_min > 0 else "-"
    a = abs(offset_min)
    return base + "%s%02d:%02d" % (sign, a // 60, a % 60)


BASE_US = parse_us("2026-03-01T00:00:00Z")

# ---------------------------------------------------------------- the model


def category_of(stream):
    for i, ch in enumerate(stream):
        if ch in "-_:/":
            return stream[:i]
    return stream


def type_matches(pat, t):
    if pat == "*":
        return True
    if pat.endswith("*"):
        return t.startswith(pat[:-1])
    if pat.startswith("*"):
        return t.endswith(pat[1:])
    return t == pat


def subject_matches(pat, subj):
    if subj is None:
        return False
    if pat.endswith("*"):
        return subj.startswith(pat[:-1])
    return subj == pat


def selector_matches(sel, e):
    kind = sel["type"]
    if kind == "and":
        return all(selector_matches(x, e) for x in sel["selectors"])
    if kind == "or":
        return any(selector_matches(x, e) for x in sel["selectors"])
    (attr, val), = sel["attr"].items()
    have = {"stream": e["stream"], "event_type": e["type"], "subject": e.get("subject")}[attr]
    if kind == "equals":
        return have == val
    if kind == "starts_with":
        return have is not None and have.startswith(val)
    raise AssertionError(f"model: selector type {kind}")


def selector_items(sel):
    """How many items a selector expands to (disjunctive normal form)."""
    if sel["type"] == "or":
        return sum(selector_items(x) for x in sel["selectors"])
    if sel["type"] == "and":
        n = 1
        for x in sel["selectors"]:
            n *= selector_items(x)
        return n
    return 1


def basic_matches(e, f):
    """types any-of, streams any-of, categories any-of, tags all-of, subjects any-of; an absent
    or empty list matches everything."""
    if f.get("types") and not any(type_matches(p, e["type"]) for p in f["types"]):
        return False
    if f.get("streams") and e["stream"] not in f["streams"]:
        return False
    if f.get("categories") and category_of(e["stream"]) not in f["categories"]:
        return False
    for t in f.get("tags") or []:
        if t not in e["tags"]:
            return False
    if f.get("subjects") and not any(subject_matches(p, e.get("subject"))
                                     for p in f["subjects"]):
        return False
    return True


class Model:
    """The whole log (read without filters) and the expected answer of any query, given in
    the POST form (GET parameters are converted by get_to_q)."""

    def __init__(self, log):
        self.log = log
        self.head = len(log)
        for i, e in enumerate(log):
            check(e["position"] == i + 1, f"log positions not 1..n at {i}: {e['position']}")
        self.rec = [parse_us(e["recorded"]) for e in log]
        self.eff = [parse_us(e["time"]) for e in log]

    def event(self, pos):
        return self.log[pos - 1]

    def asof_pos(self, q):
        if q.get("asOf") is not None:
            return min(int(q["asOf"]), self.head)
        if q.get("asOfTime") is not None:
            t = parse_us(q["asOfTime"])
            return max((i + 1 for i, r in enumerate(self.rec) if r <= t), default=0)
        return self.head

    def matches(self, e, q):
        i = e["position"] - 1
        if not basic_matches(e, q):
            return False
        if q.get("recordedFrom") and self.rec[i] < parse_us(q["recordedFrom"]):
            return False
        if q.get("recordedTo") and self.rec[i] > parse_us(q["recordedTo"]):
            return False
        if q.get("timeFrom") and self.eff[i] < parse_us(q["timeFrom"]):
            return False
        if q.get("timeTo") and self.eff[i] > parse_us(q["timeTo"]):
            return False
        if q.get("items") and not any(basic_matches(e, it) for it in q["items"]):
            return False
        if q.get("selector") and not selector_matches(q["selector"], e):
            return False
        return True

    def run(self, q):
        """Matching positions in the order of travel (every page together)."""
        top = self.asof_pos(q)
        if q.get("direction", "forward") == "backward":
            hi = min(int(q["from"]), top) if q.get("from") is not None else top
            lo = max(int(q["to"]), 1) if q.get("to") is not None else 1
            rng = range(hi, lo - 1, -1)
        else:
            lo = max(int(q["from"]), 1) if q.get("from") is not None else 1
            hi = min(int(q["to"]), top) if q.get("to") is not None else top
            rng = range(lo, hi + 1)
        return [p for p in rng if self.matches(self.log[p - 1], q)]


def get_to_q(params):
    """GET parameters (lists for list parameters) -> the model's POST-form query."""
    q = {}
    for k, v in params.items():
        if k == "category":
            q["categories"] = list(v)
        elif k == "subject":
            q["subjects"] = [v]
        elif k in ("from", "to", "limit", "asOf"):
            q[k] = int(v)
        else:
            q[k] = list(v) if isinstance(v, (list, tuple)) else v
    return q


def q_to_get(q):
    """The model's POST-form query -> GET parameters (subjects must hold at most one value)."""
    p = {}
    for k, v in q.items():
        if k == "categories":
            p["category"] = v
        elif k == "subjects":
            check(len(v) == 1, "GET holds one subject")
            p["subject"] = v[0]
        else:
            p[k] = v
    return p

# ---------------------------------------------------------------- HTTP helpers


def qs(params):
    """Query string: list values comma-joined, each item percent-encoded on its own."""
    parts = []
    for k, v in params.items():
        if isinstance(v, (list, tuple)):
            val = ",".join(urllib.parse.quote(str(x), safe="*") for x in v)
        else:
            val = urllib.parse.quote(str(v), safe="*")
        parts.append(f"{k}={val}")
    return "&".join(parts)


def events_path(db="default"):
    return f"/v1/databases/{db}/events"


def query_path(db="default"):
    return f"/v1/databases/{db}/query"


def check_page(page, limit, direction, strict=True, what=""):
    """The shape of one query answer; strict: fewer than limit events means the end (true for
    every test database here, far below 65,536 candidate events)."""
    check(isinstance(page, dict) and QUERY_KEYS <= set(page), f"{what}: answer {page!r}")
    check(isinstance(page["hasMore"], bool), f"{what}: hasMore {page['hasMore']!r}")
    check((page["next"] is None) == (not page["hasMore"]),
          f"{what}: next {page['next']!r} with hasMore {page['hasMore']}")
    check(isinstance(page["head"], int) and not isinstance(page["head"], bool),
          f"{what}: head {page['head']!r}")
    evs = page["events"]
    check(isinstance(evs, list) and len(evs) <= limit, f"{what}: {len(evs)} events > {limit}")
    pos = [e["position"] for e in evs]
    if direction == "backward":
        check(all(a > b for a, b in zip(pos, pos[1:])), f"{what}: not descending: {pos}")
    else:
        check(all(a < b for a, b in zip(pos, pos[1:])), f"{what}: not ascending: {pos}")
    check(all(p <= page["head"] for p in pos), f"{what}: position above head {page['head']}")
    if strict and len(evs) < limit:
        check(page["hasMore"] is False, f"{what}: {len(evs)} < limit {limit} events but "
                                         f"hasMore true")
    if page["hasMore"]:
        nxt = page["next"]
        check(isinstance(nxt, int) and not isinstance(nxt, bool), f"{what}: next {nxt!r}")
        if pos:
            if direction == "backward":
                check(nxt < pos[-1], f"{what}: backward next {nxt} >= last position {pos[-1]}")
            else:
                check(nxt > pos[-1], f"{what}: forward next {nxt} <= last position {pos[-1]}")


def get_page(s, params, db="default", strict=True):
    path = events_path(db) + ("?" + qs(params) if params else "")
    st, _, page = s.get(path)
    check(st == 200, f"GET {path}: {st} {page!r}")
    check_page(page, int(params.get("limit", DEFAULT_LIMIT)),
               params.get("direction", "forward"), strict, f"GET {path}")
    return page


def post_page(s, body, db="default", strict=True):
    st, _, page = s.post(query_path(db), body)
    check(st == 200, f"POST query {body!r}: {st} {page!r}")
    check_page(page, int(body.get("limit", DEFAULT_LIMIT)), body.get("direction", "forward"),
               strict, f"POST {body!r}")
    return page


def page_all(s, q, post=False, db="default", max_pages=3000):
    """Every page of a query, following next. Returns (events, first page's head)."""
    q = dict(q)
    out = []
    head = None
    for _ in range(max_pages):
        page = post_page(s, q, db) if post else get_page(s, q, db)
        if head is None:
            head = page["head"]
        check(page["head"] == head, f"head moved while nothing was appended: {head} -> "
                                    f"{page['head']} ({q!r})")
        out.extend(page["events"])
        if not page["hasMore"]:
            return out, head
        q["from"] = page["next"]
    raise AssertionError(f"paging {q!r} does not end")


def positions(evs):
    return [e["position"] for e in evs]


def expect_query(s, model, q, post=False, what=""):
    """Pages q to the end; the events must be exactly the model's, whole (same JSON)."""
    want = model.run(q if post else get_to_q(q))
    got, head = page_all(s, q, post)
    check(positions(got) == want, f"{what} {'POST' if post else 'GET'} {q!r}:\n"
                                  f"  got  {positions(got)}\n  want {want}")
    for e in got:
        check(e == model.event(e["position"]), f"{q!r}: event differs from the log read: "
                                               f"{e!r} vs {model.event(e['position'])!r}")
    want_head = model.asof_pos(q if post else get_to_q(q))
    check(head == want_head, f"{q!r}: head {head}, want {want_head}")
    return got


def expect_bad(resp, status, code, field_prefix):
    """An error whose field is field_prefix or a path below it ('items' accepts 'items[2].x')."""
    body = expect_error(resp, status, code)
    field = body["error"].get("field")
    check(isinstance(field, str) and (field == field_prefix or
                                      field.startswith(field_prefix + "[") or
                                      field.startswith(field_prefix + ".")),
          f"expected error.field {field_prefix!r} (or below it), got {field!r}")
    return body


def append_ok(s, stream, events, db="default"):
    st, _, ans = s.append(stream, events, db=db)
    check(st == 201, f"append to {stream}: {st} {ans!r}")
    return ans


def ev(type_, **kw):
    e = {"type": type_, "data": kw.pop("data", 0)}
    e.update(kw)
    return e


def plain_positions(s, params, post=False):
    got, _ = page_all(s, params, post)
    return positions(got)

# ---------------------------------------------------------------- the varied data set

STREAMS = ["order-1", "order-2", "order-3", "order_4", "order:5", "order/6", "orders-1",
           "user-1", "user-2", "user_3", "user:4", "user/5", "cart-1", "cart-2", "cart:3",
           "cart", "inventory", "misc-a", "misc_b", "x"]
CATEGORIES = ["order", "orders", "user", "cart", "inventory", "misc", "x", "nope"]
TYPES = ["order.placed", "order.shipped", "order.cancelled", "user.placed", "user.created",
         "cart.item.added"]
TYPE_PATTERNS = TYPES + ["order.*", "user.*", "cart.*", "*.placed", "*.created", "*.added", "*",
                         "order.placed.x", "nope"]
TAGS = ["a", "b", "c", "region:eu", "vip"]
SUBJECTS = ["customers/1", "customers/10", "customers/2", "customers", "products/1",
            "products/22"]
SUBJECT_PATTERNS = SUBJECTS + ["customers/1*", "customers*", "products/*", "p*", "nope"]


def build_dataset(s, seed, n=300, db="default"):
    """Appends about n events (batches of 1-5 to random streams) and returns the model of the
    log read back. Checks that subjects come back as sent (absent when none)."""
    rng = random.Random(seed)
    sent = []
    while len(sent) < n:
        stream = rng.choice(STREAMS)
        batch = []
        for _ in range(rng.randint(1, 5)):
            e = ev(rng.choice(TYPES), data={"i": len(sent) + len(batch)})
            tags = rng.sample(TAGS, rng.choice([0, 1, 1, 2, 2, 3]))
            if tags or rng.random() < 0.5:
                e["tags"] = tags
            if rng.random() < 0.6:
                e["subject"] = rng.choice(SUBJECTS)
            if rng.random() < 0.85:
                us = BASE_US + rng.randint(0, 20000) * 60_000_000 + rng.randint(0, 999999)
                e["time"] = fmt_us(us, rng.choice([0, 0, 120, -330]))
            batch.append(e)
        append_ok(s, stream, batch, db=db)
        sent.extend((stream, e) for e in batch)
    log = s.read_log(db=db)
    check(len(log) == len(sent), f"log has {len(log)} events, {len(sent)} appended")
    for got, (stream, e) in zip(log, sent):
        check(got["stream"] == stream and got["type"] == e["type"] and got["data"] == e["data"],
              f"log event {got!r} is not the one sent {e!r}")
        if "subject" in e:
            check(got.get("subject") == e["subject"], f"subject not returned: {got!r}")
        else:
            check("subject" not in got, f"event sent without subject has one: {got!r}")
    return Model(log)


def random_query(rng, model, post):
    """A random query in the POST form; with post False it stays expressible as GET."""
    q = {}
    if rng.random() < 0.4:
        q["types"] = rng.sample(TYPE_PATTERNS, rng.randint(1, 3))
    if rng.random() < 0.2:
        q["streams"] = rng.sample(STREAMS, rng.randint(1, 3))
    if rng.random() < 0.25:
        q["categories"] = rng.sample(CATEGORIES, rng.randint(1, 2))
    if rng.random() < 0.35:
        q["tags"] = rng.sample(TAGS, rng.randint(1, 2))
    if rng.random() < 0.25:
        q["subjects"] = rng.sample(SUBJECT_PATTERNS, rng.randint(1, 2) if post else 1)
    if rng.random() < 0.15:
        a, b = sorted(rng.sample(range(model.head), 2))
        if rng.random() < 0.7:
            q["recordedFrom"] = model.log[a]["recorded"]
        if rng.random() < 0.7:
            q["recordedTo"] = model.log[b]["recorded"]
    if rng.random() < 0.2:
        a, b = sorted(rng.randint(0, 20000) for _ in range(2))
        if rng.random() < 0.7:
            q["timeFrom"] = fmt_us(BASE_US + a * 60_000_000, rng.choice([0, 60]))
        if rng.random() < 0.7:
            q["timeTo"] = fmt_us(BASE_US + b * 60_000_000, rng.choice([0, -90]))
    r = rng.random()
    if r < 0.12:
        q["asOf"] = rng.randint(1, model.head + 5)
    elif r < 0.2:
        q["asOfTime"] = rng.choice(model.log)["recorded"]
    direction = rng.choice(["forward", "backward"])
    if direction == "backward" or rng.random() < 0.5:
        q["direction"] = direction
    top = model.asof_pos(q)
    if rng.random() < 0.35 and top >= 1:
        a, b = sorted(rng.randint(1, top) for _ in range(2))
        lo_hi = (a, b) if direction == "forward" else (b, a)
        if rng.random() < 0.8:
            q["from"] = lo_hi[0]
        if rng.random() < 0.8:
            q["to"] = lo_hi[1]
    limit = rng.choice([None, 2, 5, 10, 25, 1000])
    if limit is not None:
        q["limit"] = limit
    filters = {"types", "streams", "categories", "tags", "subjects", "recordedFrom",
               "recordedTo", "timeFrom", "timeTo", "asOf", "asOfTime"}
    if not filters & set(q):
        q["types"] = ["*"]
    return q


def random_items(rng):
    items = []
    for _ in range(rng.randint(1, 4)):
        it = {}
        if rng.random() < 0.75:
            it["types"] = rng.sample(TYPE_PATTERNS[:-2], rng.randint(0, 2))
        if rng.random() < 0.6:
            it["tags"] = rng.sample(TAGS, rng.randint(1, 2))
        if rng.random() < 0.15:
            it["streams"] = rng.sample(STREAMS, rng.randint(1, 3))
        if rng.random() < 0.15:
            it["categories"] = rng.sample(CATEGORIES, 1)
        if rng.random() < 0.15:
            it["subjects"] = rng.sample(SUBJECT_PATTERNS, rng.randint(1, 2))
        if not any(it.values()):
            it["types"] = [rng.choice(TYPES)]
        items.append(it)
    return items


def random_leaf(rng):
    k = rng.randrange(7)
    if k == 0:
        return {"type": "equals", "attr": {"stream": rng.choice(STREAMS)}}
    if k == 1:
        return {"type": "starts_with", "attr": {"stream": rng.choice(["order", "user/", "cart-",
                                                                       "c", "misc_"])}}
    if k == 2:
        return {"type": "equals", "attr": {"event_type": rng.choice(TYPES)}}
    if k == 3:
        return {"type": "starts_with", "attr": {"event_type": rng.choice(["order.", "user.",
                                                                           "cart", "o"])}}
    if k == 4:
        return {"type": "equals", "attr": {"subject": rng.choice(SUBJECTS + [None])}}
    if k == 5:
        return {"type": "equals", "attr": {"subject": None}}
    return {"type": "starts_with", "attr": {"subject": rng.choice(["customers/1", "products",
                                                                    "c"])}}


def random_selector(rng, depth=3):
    if depth == 0 or rng.random() < 0.3:
        return random_leaf(rng)
    return {"type": rng.choice(["and", "or"]),
            "selectors": [random_selector(rng, depth - 1) for _ in range(rng.randint(2, 3))]}

# ================================================================ response shape


def test_query_response_shape_and_empty_database():
    with Server() as s:
        st, _, page = s.get(events_path() + "?types=*")
        check(st == 200 and page == {"events": [], "head": 0, "hasMore": False, "next": None},
              f"empty database GET query: {st} {page!r}")
        st, _, page = s.post(query_path(), {})
        check(st == 200 and page == {"events": [], "head": 0, "hasMore": False, "next": None},
              f"empty database POST query: {st} {page!r}")
        for i in range(12):
            append_ok(s, f"s-{i % 3}", [ev("t", data=i), ev("u", data=i)])
        page = get_page(s, {"types": ["t"], "limit": 5})
        check(positions(page["events"]) == [1, 3, 5, 7, 9], f"first page {page!r}")
        check(page["head"] == 24 and page["hasMore"] is True and isinstance(page["next"], int)
              and 9 < page["next"] <= 11, f"first page cursor {page!r}")
        for e in page["events"]:
            check(set(e) == EVENT_KEYS, f"event keys {sorted(e)}")
        page2 = get_page(s, {"types": ["t"], "limit": 5, "from": page["next"]})
        check(positions(page2["events"]) == [11, 13, 15, 17, 19], f"second page {page2!r}")
        page3 = get_page(s, {"types": ["t"], "limit": 5, "from": page2["next"]})
        check(positions(page3["events"]) == [21, 23] and page3["hasMore"] is False and
              page3["next"] is None, f"last page {page3!r}")
        # from past the head: nothing, the end
        page = get_page(s, {"types": ["t"], "from": 25})
        check(page["events"] == [] and page["hasMore"] is False and page["next"] is None
              and page["head"] == 24, f"from past head {page!r}")
        # the same through POST
        page = post_page(s, {"types": ["t"], "limit": 5})
        check(positions(page["events"]) == [1, 3, 5, 7, 9] and page["hasMore"] is True,
              f"POST first page {page!r}")
        page = post_page(s, {})
        check(positions(page["events"]) == list(range(1, 25)) and page["hasMore"] is False,
              f"POST with no filter: every event {positions(page['events'])}")


# ================================================================ single filters


def test_query_types_exact_prefix_suffix_any():
    with Server() as s:
        types = ["order.placed", "order.shipped", "user.placed", "order", "orders.placed",
                 "x.order.placed", "placed", "Order.placed"]
        for i, t in enumerate(types):
            append_ok(s, f"s-{i % 2}", [ev(t, data=i)])
        cases = [(["order.placed"], [1]),
                 (["order.*"], [1, 2]),
                 (["*.placed"], [1, 3, 5, 6, 8]),
                 (["*"], list(range(1, 9))),
                 (["order"], [4]),
                 (["order*"], [1, 2, 4, 5]),
                 (["*placed"], [1, 3, 5, 6, 7, 8]),
                 (["nope"], []),
                 (["order.placed", "user.placed"], [1, 3]),
                 (["order.*", "*.placed"], [1, 2, 3, 5, 6, 8]),
                 (["placed", "order", "Order.placed"], [4, 7, 8]),
                 (["*", "nope"], list(range(1, 9)))]
        for pats, want in cases:
            got = plain_positions(s, {"types": pats})
            check(got == want, f"GET types={','.join(pats)}: {got}, want {want}")
            got = plain_positions(s, {"types": pats}, post=True)
            check(got == want, f"POST types={pats}: {got}, want {want}")


def test_query_streams_filter():
    with Server() as s:
        names = ["a", "a-1", "b", "ab", "x/y", "p,q", "é-1"]
        for round_ in range(2):
            for n in names:
                append_ok(s, n, [ev("t", data=[n, round_])])
        log = s.read_log()
        pos = {}
        for e in log:
            pos.setdefault(e["stream"], []).append(e["position"])
        for sel in (["a"], ["b"], ["a", "b"], ["x/y"], ["é-1", "ab"], ["nope"], ["a", "nope"]):
            want = sorted(p for n in sel for p in pos.get(n, []))
            got = plain_positions(s, {"streams": sel})
            check(got == want, f"GET streams={sel}: {got}, want {want}")
            got = plain_positions(s, {"streams": sel}, post=True)
            check(got == want, f"POST streams={sel}: {got}, want {want}")
        # a name holding a comma can only be said in POST
        got = plain_positions(s, {"streams": ["p,q"]}, post=True)
        check(got == pos["p,q"], f"POST streams=['p,q']: {got}, want {pos['p,q']}")


def test_query_category_separators():
    with Server() as s:
        names = ["order-1", "order_2", "order:3", "order/4", "order", "orders-5", "order.6",
                 "x-order-1", "order-a_b", "ord_er-1", "order_a-b"]
        for n in names:
            append_ok(s, n, [ev("t", data=n)])
        at = {n: i + 1 for i, n in enumerate(names)}

        def want_of(cats):
            return sorted(at[n] for n in names if category_of(n) in cats)

        check(want_of(["order"]) == [at[n] for n in ["order-1", "order_2", "order:3", "order/4",
                                                      "order", "order-a_b", "order_a-b"]],
              "the test's own category model")
        for cats in (["order"], ["orders"], ["order.6"], ["x"], ["ord"], ["order", "x"],
                     ["ord_er"], ["nope"], ["order-1"]):
            want = want_of(cats)
            got = plain_positions(s, {"category": cats})
            check(got == want, f"GET category={','.join(cats)}: {got}, want {want}")
            got = plain_positions(s, {"categories": cats}, post=True)
            check(got == want, f"POST categories={cats}: {got}, want {want}")


def test_query_tags_all_of():
    with Server() as s:
        tagsets = [["a"], ["a", "b"], ["b"], ["a", "b", "c"], [], ["region:eu", "a"],
                   ["c", "b", "a"], ["ab"]]
        for i, tags in enumerate(tagsets):
            append_ok(s, "s-1", [ev("t", data=i, tags=tags)])
        cases = [(["a"], [1, 2, 4, 6, 7]),
                 (["a", "b"], [2, 4, 7]),
                 (["b", "a"], [2, 4, 7]),
                 (["a", "b", "c"], [4, 7]),
                 (["region:eu"], [6]),
                 (["region:eu", "b"], []),
                 (["ab"], [8]),
                 (["d"], [])]
        for tags, want in cases:
            got = plain_positions(s, {"tags": tags})
            check(got == want, f"GET tags={','.join(tags)}: {got}, want {want}")
            got = plain_positions(s, {"tags": tags}, post=True)
            check(got == want, f"POST tags={tags}: {got}, want {want}")


def test_query_subject_exact_and_prefix():
    with Server() as s:
        subjects = ["customers/1", "customers/10", "customers/2", None, "customers",
                    "products/1", "Customers/1", None]
        for i, subj in enumerate(subjects):
            e = ev("t", data=i)
            if subj is not None:
                e["subject"] = subj
            append_ok(s, f"s-{i % 3}", [e])
        for e in s.read_log():
            subj = subjects[e["position"] - 1]
            if subj is None:
                check("subject" not in e and set(e) == EVENT_KEYS,
                      f"event without subject has keys {sorted(e)}")
            else:
                check(e.get("subject") == subj and set(e) == EVENT_KEYS | {"subject"},
                      f"subject read back: {e!r}")
        cases = [("customers/1", [1]), ("customers/1*", [1, 2]), ("customers*", [1, 2, 3, 5]),
                 ("customers/*", [1, 2, 3]), ("products/1", [6]), ("C*", [7]), ("nope", []),
                 ("customers/", [])]
        for subj, want in cases:
            got = plain_positions(s, {"subject": subj})
            check(got == want, f"GET subject={subj}: {got}, want {want}")
            got = plain_positions(s, {"subjects": [subj]}, post=True)
            check(got == want, f"POST subjects=[{subj}]: {got}, want {want}")
        for subjs, want in ((["customers/2", "products/1"], [3, 6]),
                            (["customers/1*", "products*"], [1, 2, 6]),
                            (["customers", "Customers/1"], [5, 7])):
            got = plain_positions(s, {"subjects": subjs}, post=True)
            check(got == want, f"POST subjects={subjs}: {got}, want {want}")


def test_append_subject_round_trip_and_validation():
    with Server() as s:
        ans = append_ok(s, "subj-1", [ev("t", subject="customers/7"), ev("t"),
                                      ev("t", subject="x" * 256)])
        check(ans["version"] == 3, f"append {ans!r}")
        evs = s.read_stream("subj-1")
        check(evs[0].get("subject") == "customers/7", f"stream read subject {evs[0]!r}")
        check("subject" not in evs[1], f"stream read: no subject expected {evs[1]!r}")
        check(evs[2].get("subject") == "x" * 256, "256-byte subject")
        st, _, one = s.get("/v1/databases/default/events/1")
        check(st == 200 and one.get("subject") == "customers/7", f"event by position {one!r}")
        st, _, one = s.get("/v1/databases/default/events/2")
        check(st == 200 and "subject" not in one, f"event by position {one!r}")
        before = s.head()
        for bad in ["", "x" * 257, 5, ["a"], {"a": 1}]:
            expect_error(s.append("subj-1", [ev("t"), ev("t", subject=bad)]), 400,
                         "invalid_event", "events[1].subject")
        check(s.head() == before, "a refused append changed the log")


def test_query_from_to_forward_and_backward():
    with Server() as s:
        for i in range(1, 21):
            append_ok(s, "a-1" if i % 2 else "b-1", [ev("t", data=i)])
        cases = [({"from": 5, "to": 13}, [5, 7, 9, 11, 13]),
                 ({"from": 15}, [15, 17, 19]),
                 ({"to": 6}, [1, 3, 5]),
                 ({"from": 7, "to": 7}, [7]),
                 ({"from": 8, "to": 8}, []),
                 ({"from": 4, "to": 1000}, [5, 7, 9, 11, 13, 15, 17, 19]),
                 ({"from": 13, "to": 5, "direction": "backward"}, [13, 11, 9, 7, 5]),
                 ({"from": 6, "direction": "backward"}, [5, 3, 1]),
                 ({"to": 16, "direction": "backward"}, [19, 17]),
                 ({"direction": "backward"}, [19, 17, 15, 13, 11, 9, 7, 5, 3, 1]),
                 ({"from": 7, "to": 7, "direction": "backward"}, [7])]
        for extra, want in cases:
            for limit in (None, 1, 2, 1000):
                params = dict(extra, streams=["a-1"])
                if limit:
                    params["limit"] = limit
                got = plain_positions(s, params)
                check(got == want, f"GET {params}: {got}, want {want}")
                got = plain_positions(s, params, post=True)
                check(got == want, f"POST {params}: {got}, want {want}")
        # one page with a range: next stays inside it and the end says so
        page = get_page(s, {"streams": ["a-1"], "from": 5, "to": 13, "limit": 2})
        check(positions(page["events"]) == [5, 7] and page["hasMore"] is True and
              7 < page["next"] <= 9, f"ranged first page {page!r}")
        page = get_page(s, {"streams": ["a-1"], "from": 11, "to": 13, "limit": 2})
        check(positions(page["events"]) == [11, 13] and page["hasMore"] in (True, False),
              f"ranged last page {page!r}")
        if page["hasMore"]:
            page = get_page(s, {"streams": ["a-1"], "from": page["next"], "to": 13, "limit": 2})
            check(page["events"] == [] and page["hasMore"] is False,
                  f"after the last page of a range: {page!r}")


def test_query_direction_and_limit():
    with Server() as s:
        for k in range(15):
            append_ok(s, "d-1", [ev("t", data=k * 10 + j) for j in range(10)])
            append_ok(s, "d-2", [ev("u", data=k)])
        t_pos = [e["position"] for e in s.read_log() if e["type"] == "t"]
        check(len(t_pos) == 150, "150 events of type t")
        page = get_page(s, {"types": ["t"]})
        check(positions(page["events"]) == t_pos[:100] and page["hasMore"] is True,
              f"default limit 100: {len(page['events'])} events")
        page = get_page(s, {"types": ["t"], "from": page["next"]})
        check(positions(page["events"]) == t_pos[100:] and page["hasMore"] is False,
              "second page of the default limit")
        page = get_page(s, {"types": ["t"], "direction": "backward"})
        check(positions(page["events"]) == t_pos[::-1][:100] and page["hasMore"] is True,
              "backward default limit")
        page = get_page(s, {"types": ["t"], "limit": 1000})
        check(positions(page["events"]) == t_pos and page["hasMore"] is False, "limit 1000")
        page = get_page(s, {"types": ["t"], "limit": 1000, "direction": "forward"})
        check(positions(page["events"]) == t_pos, "direction=forward")
        for limit in (1, 7, 149, 150, 151):
            for d in ("forward", "backward"):
                got = plain_positions(s, {"types": ["t"], "limit": limit, "direction": d})
                want = t_pos if d == "forward" else t_pos[::-1]
                check(got == want, f"types=t limit={limit} {d}: paging gave {len(got)} events")
        got = plain_positions(s, {"types": ["u"], "limit": 4, "direction": "backward"},
                              post=True)
        want = [e["position"] for e in s.read_log() if e["type"] == "u"][::-1]
        check(got == want, f"POST backward limit 4: {got}, want {want}")
        page = post_page(s, {"types": ["t"]})
        check(len(page["events"]) == 100 and page["hasMore"] is True, "POST default limit")


def test_query_recorded_time_range():
    with Server() as s:
        for k in range(6):
            append_ok(s, f"r-{k % 2}", [ev("t", data=k), ev("u", data=k)])
            time.sleep(0.003)
        log = s.read_log()
        rec = [e["recorded"] for e in log[::2]]  # one per commit
        check(len(set(rec)) == 6, f"commits did not get distinct recorded times: {rec}")
        r = [parse_us(x) for x in rec]

        def commits(*ks):
            return [2 * k + j + 1 for k in ks for j in (0, 1)]

        cases = [({"recordedFrom": rec[3]}, commits(3, 4, 5)),
                 ({"recordedTo": rec[1]}, commits(0, 1)),
                 ({"recordedFrom": rec[2], "recordedTo": rec[4]}, commits(2, 3, 4)),
                 ({"recordedFrom": rec[2], "recordedTo": rec[2]}, commits(2)),
                 ({"recordedFrom": fmt_us(r[2] + 1)}, commits(3, 4, 5)),
                 ({"recordedTo": fmt_us(r[2] - 1)}, commits(0, 1)),
                 ({"recordedFrom": fmt_us(r[2], 330), "recordedTo": fmt_us(r[3], -120)},
                  commits(2, 3)),
                 ({"recordedFrom": "2000-01-01T00:00:00Z", "recordedTo": "2001-01-01T00:00:00Z"},
                  []),
                 ({"recordedFrom": rec[4], "types": ["u"]}, [10, 12])]
        for params, want in cases:
            got = plain_positions(s, params)
            check(got == want, f"GET {params}: {got}, want {want}")
            got = plain_positions(s, params, post=True)
            check(got == want, f"POST {params}: {got}, want {want}")
            params = dict(params, direction="backward")
            got = plain_positions(s, params)
            check(got == want[::-1], f"GET {params}: {got}, want {want[::-1]}")


def test_query_effective_time_range():
    with Server() as s:
        times = ["2020-05-01T10:00:00Z", "2020-05-01T09:00:00Z", "2020-05-01T12:00:00+02:00",
                 "2020-05-01T10:00:00.000001Z", "2020-05-02T00:00:00Z",
                 "2020-04-30T23:59:59.999999Z"]
        for i, t in enumerate(times):
            append_ok(s, "eff-1", [ev("t", data=i, time=t)])
        append_ok(s, "eff-1", [ev("t", data="now")])  # effective time = commit time
        cases = [({"timeFrom": "2020-05-01T10:00:00Z"}, [1, 3, 4, 5, 7]),
                 ({"timeTo": "2020-05-01T10:00:00Z"}, [1, 2, 3, 6]),
                 ({"timeFrom": "2020-05-01T10:00:00Z", "timeTo": "2020-05-01T10:00:00Z"},
                  [1, 3]),
                 ({"timeFrom": "2020-05-01T12:00:00+02:00",
                   "timeTo": "2020-05-01T10:00:00.000001Z"}, [1, 3, 4]),
                 ({"timeFrom": "2020-05-01T00:00:00Z", "timeTo": "2020-05-01T23:59:59Z"},
                  [1, 2, 3, 4]),
                 ({"timeFrom": "2020-05-01T05:30:00+05:30", "timeTo": "2020-05-01T00:00:00Z"},
                  []),
                 ({"timeTo": "2020-04-30T23:59:59.999999Z"}, [6]),
                 ({"timeFrom": "2021-01-01T00:00:00Z"}, [7])]
        for params, want in cases:
            got = plain_positions(s, params)
            check(got == want, f"GET {params}: {got}, want {want}")
            got = plain_positions(s, params, post=True)
            check(got == want, f"POST {params}: {got}, want {want}")


def test_query_as_of_position():
    with Server() as s:
        for i in range(10):
            append_ok(s, f"as-{i % 2}", [ev("t" if i % 3 else "u", data=i)])
        page = get_page(s, {"asOf": 4})
        check(positions(page["events"]) == [1, 2, 3, 4] and page["head"] == 4 and
              page["hasMore"] is False, f"asOf=4: {page!r}")
        page = get_page(s, {"asOf": 4, "direction": "backward"})
        check(positions(page["events"]) == [4, 3, 2, 1] and page["head"] == 4,
              f"asOf=4 backward: {page!r}")
        page = get_page(s, {"asOf": 7, "types": ["t"]})
        check(positions(page["events"]) == [2, 3, 5, 6] and page["head"] == 7,
              f"asOf=7 types=t: {page!r}")
        page = get_page(s, {"asOf": 100, "types": ["*"]})
        check(page["head"] == 10 and len(page["events"]) == 10, f"asOf past the head: {page!r}")
        page = get_page(s, {"asOf": 4, "from": 5, "types": ["*"]})
        check(page["events"] == [] and page["hasMore"] is False and page["head"] == 4,
              f"asOf=4 from=5: {page!r}")
        got = plain_positions(s, {"asOf": 6, "limit": 2, "streams": ["as-1"]})
        check(got == [2, 4, 6], f"asOf=6 streams=as-1 paged: {got}")
        page = post_page(s, {"asOf": 5, "direction": "backward", "limit": 2})
        check(positions(page["events"]) == [5, 4] and page["head"] == 5 and page["hasMore"],
              f"POST asOf=5 backward: {page!r}")
        got = plain_positions(s, {"asOf": 5, "direction": "backward", "limit": 2}, post=True)
        check(got == [5, 4, 3, 2, 1], f"POST asOf=5 backward paged: {got}")
        # appends after the snapshot position stay invisible
        append_ok(s, "as-0", [ev("t", data=99)])
        page = get_page(s, {"asOf": 10, "types": ["t"]})
        check(11 not in positions(page["events"]) and page["head"] == 10,
              f"asOf=10 after an append: {page!r}")


def test_query_as_of_time():
    with Server() as s:
        for k in range(5):
            append_ok(s, f"at-{k}", [ev("t", data=k), ev("u", data=k)])
            time.sleep(0.003)
        log = s.read_log()
        rec = [log[2 * k]["recorded"] for k in range(5)]
        r = [parse_us(x) for x in rec]
        page = get_page(s, {"asOfTime": rec[2]})
        check(page["head"] == 6 and positions(page["events"]) == [1, 2, 3, 4, 5, 6],
              f"asOfTime=commit 3: {page!r}")
        page = get_page(s, {"asOfTime": fmt_us(r[2] + 1), "types": ["u"]})
        check(page["head"] == 6 and positions(page["events"]) == [2, 4, 6],
              f"asOfTime just after commit 3: {page!r}")
        page = get_page(s, {"asOfTime": fmt_us(r[2] - 1)})
        check(page["head"] == 4, f"asOfTime just before commit 3: {page!r}")
        page = get_page(s, {"asOfTime": fmt_us(r[2], 600)})
        check(page["head"] == 6, f"asOfTime with an offset: {page!r}")
        page = get_page(s, {"asOfTime": "2000-01-01T00:00:00Z"})
        check(page["head"] == 0 and page["events"] == [] and page["hasMore"] is False,
              f"asOfTime before the first event: {page!r}")
        page = get_page(s, {"asOfTime": "2999-01-01T00:00:00Z"})
        check(page["head"] == 10 and len(page["events"]) == 10, f"asOfTime in the future {page!r}")
        page = post_page(s, {"asOfTime": rec[1], "direction": "backward"})
        check(page["head"] == 4 and positions(page["events"]) == [4, 3, 2, 1],
              f"POST asOfTime backward: {page!r}")


# ================================================================ combinations vs the model


def test_query_get_random_combinations_vs_model():
    with Server() as s:
        model = build_dataset(s, seed=11)
        rng = random.Random(1011)
        fixed = [{"types": ["order.*"], "tags": ["a"]},
                 {"category": ["order"], "types": ["*.placed"]},
                 {"streams": ["order-1", "cart"], "from": 40, "to": 200},
                 {"streams": ["order-1", "cart"], "from": 200, "to": 40, "direction": "backward"},
                 {"category": ["cart", "user"], "tags": ["b", "vip"], "direction": "backward",
                  "limit": 3},
                 {"subject": "customers/1*", "types": ["order.placed", "user.*"]},
                 {"types": ["*"], "limit": 1}]
        for params in fixed:
            expect_query(s, model, params, what="fixed")
        for i in range(50):
            params = q_to_get(random_query(rng, model, post=False))
            expect_query(s, model, params, what=f"random #{i}")


def test_query_post_random_combinations_vs_model():
    with Server() as s:
        model = build_dataset(s, seed=12)
        rng = random.Random(1012)
        for i in range(50):
            q = random_query(rng, model, post=True)
            expect_query(s, model, q, post=True, what=f"random #{i}")
        # and each GET-expressible query gives the same answer both ways
        for i in range(15):
            q = random_query(rng, model, post=False)
            a = expect_query(s, model, q, post=True, what=f"POST twin #{i}")
            b = expect_query(s, model, q_to_get(q), what=f"GET twin #{i}")
            check(a == b, f"POST and GET differ for {q!r}")


def test_query_post_items_dcb():
    with Server() as s:
        append_ok(s, "c-1", [ev("course.created", tags=["course:1"]),
                             ev("course.renamed", tags=["course:1"]),
                             ev("student.subscribed", tags=["course:1", "student:7"]),
                             ev("student.subscribed", tags=["course:2", "student:7"]),
                             ev("student.subscribed", tags=["course:1", "student:8"]),
                             ev("course.created", tags=["course:2"]),
                             ev("other", tags=["student:7"])])
        cases = [([{"types": ["course.created"], "tags": ["course:1"]}], [1]),
                 ([{"types": ["course.created", "course.renamed"], "tags": ["course:1"]}], [1, 2]),
                 ([{"types": ["student.subscribed"], "tags": ["course:1", "student:7"]}], [3]),
                 ([{"types": ["course.*"], "tags": ["course:1"]},
                   {"types": ["student.subscribed"], "tags": ["student:7"]}], [1, 2, 3, 4]),
                 ([{"tags": ["student:7"]}], [3, 4, 7]),
                 ([{"types": [], "tags": ["student:7"]}], [3, 4, 7]),
                 ([{"types": ["other"]}, {"types": ["course.created"]}], [1, 6, 7]),
                 ([{"types": ["nope"]}, {"tags": ["nope"]}], []),
                 ([{"types": ["course.created"], "tags": ["course:1"]},
                   {"types": ["course.created"], "tags": ["course:1"]}], [1])]
        for items, want in cases:
            for d in ("forward", "backward"):
                got = plain_positions(s, {"items": items, "direction": d, "limit": 2}, post=True)
                w = want if d == "forward" else want[::-1]
                check(got == w, f"items {items} {d}: {got}, want {w}")
        # an item may also hold streams, categories and subjects
        append_ok(s, "c-2", [ev("course.created", tags=["course:3"], subject="courses/3")])
        append_ok(s, "d_1", [ev("course.created", tags=["course:3"])])
        cases = [([{"types": ["course.created"], "streams": ["c-2"]}], [8]),
                 ([{"types": ["course.created"], "categories": ["d"]}], [9]),
                 ([{"subjects": ["courses/*"]}, {"streams": ["d_1"]}], [8, 9]),
                 ([{"tags": ["course:3"], "categories": ["c"]}], [8])]
        for items, want in cases:
            got = plain_positions(s, {"items": items}, post=True)
            check(got == want, f"items {items}: {got}, want {want}")


def test_query_post_items_with_top_level_filters_vs_model():
    with Server() as s:
        model = build_dataset(s, seed=13)
        rng = random.Random(1013)
        fixed = [{"items": [{"types": ["order.placed"], "tags": ["a"]},
                            {"types": ["user.*"], "tags": ["b"]}], "categories": ["order"]},
                 {"items": [{"tags": ["a"]}, {"tags": ["b"]}], "types": ["*.placed"],
                  "direction": "backward", "limit": 4},
                 {"items": [{"types": ["cart.item.added"]}], "streams": ["cart", "cart-1"],
                  "from": 30, "to": 250}]
        for q in fixed:
            expect_query(s, model, q, post=True, what="fixed items")
        for i in range(40):
            q = random_query(rng, model, post=True)
            q["items"] = random_items(rng)
            expect_query(s, model, q, post=True, what=f"random items #{i}")


def test_query_post_selector_leaves():
    with Server() as s:
        append_ok(s, "order-1", [ev("order.placed", subject="customers/1"),
                                 ev("order.shipped")])
        append_ok(s, "order-10", [ev("order.placed", subject="customers/10")])
        append_ok(s, "user-1", [ev("user.created", subject="users/1"), ev("user.placed")])
        append_ok(s, "order", [ev("orderx")])
        cases = [({"type": "equals", "attr": {"stream": "order-1"}}, [1, 2]),
                 ({"type": "starts_with", "attr": {"stream": "order-1"}}, [1, 2, 3]),
                 ({"type": "starts_with", "attr": {"stream": "order"}}, [1, 2, 3, 6]),
                 ({"type": "equals", "attr": {"event_type": "order.placed"}}, [1, 3]),
                 ({"type": "starts_with", "attr": {"event_type": "order."}}, [1, 2, 3]),
                 ({"type": "starts_with", "attr": {"event_type": "order"}}, [1, 2, 3, 6]),
                 ({"type": "equals", "attr": {"subject": "customers/1"}}, [1]),
                 ({"type": "starts_with", "attr": {"subject": "customers/1"}}, [1, 3]),
                 ({"type": "starts_with", "attr": {"subject": "u"}}, [4]),
                 ({"type": "equals", "attr": {"subject": None}}, [2, 5, 6]),
                 ({"type": "equals", "attr": {"stream": "nope"}}, []),
                 ({"type": "and", "selectors": [
                     {"type": "starts_with", "attr": {"stream": "order"}},
                     {"type": "equals", "attr": {"subject": None}}]}, [2, 6]),
                 ({"type": "or", "selectors": [
                     {"type": "equals", "attr": {"event_type": "user.placed"}},
                     {"type": "equals", "attr": {"stream": "order-10"}}]}, [3, 5]),
                 ({"type": "and", "selectors": [
                     {"type": "or", "selectors": [
                         {"type": "equals", "attr": {"stream": "order-1"}},
                         {"type": "equals", "attr": {"stream": "user-1"}}]},
                     {"type": "starts_with", "attr": {"event_type": "user."}}]}, [4, 5])]
        for sel, want in cases:
            got = plain_positions(s, {"selector": sel}, post=True)
            check(got == want, f"selector {sel}: {got}, want {want}")
            got = plain_positions(s, {"selector": sel, "direction": "backward", "limit": 1},
                                  post=True)
            check(got == want[::-1], f"selector {sel} backward: {got}, want {want[::-1]}")
        # top-level filters apply to the selector too
        got = plain_positions(s, {"selector": {"type": "starts_with",
                                               "attr": {"stream": "order"}},
                                  "types": ["order.placed"], "from": 2}, post=True)
        check(got == [3], f"selector with types and from: {got}")


def test_query_post_selector_nesting_vs_model():
    with Server() as s:
        model = build_dataset(s, seed=14)
        rng = random.Random(1014)
        done = 0
        while done < 50:
            sel = random_selector(rng)
            if selector_items(sel) > 64:
                continue
            q = {"selector": sel}
            if rng.random() < 0.4:
                extra = random_query(rng, model, post=True)
                if rng.random() < 0.5:
                    extra.pop("types", None)
                q.update(extra)
            else:
                q["direction"] = rng.choice(["forward", "backward"])
                q["limit"] = rng.choice([3, 20, 1000])
            expect_query(s, model, q, post=True, what=f"selector #{done}")
            done += 1


def test_query_paging_full_limit_one_no_gaps_or_repeats():
    with Server() as s:
        model = build_dataset(s, seed=15, n=120)
        for q in ({"types": ["order.*", "*.created"], "limit": 1},
                  {"category": ["user", "cart"], "limit": 1, "direction": "backward"},
                  {"tags": ["a"], "limit": 3}):
            got = expect_query(s, model, q)
            pos = positions(got)
            check(len(pos) == len(set(pos)), f"{q}: repeats {pos}")
        for q in ({"items": [{"tags": ["b"]}, {"types": ["user.placed"]}], "limit": 1},
                  {"subjects": ["customers*"], "limit": 1, "direction": "backward"}):
            expect_query(s, model, q, post=True)


# ================================================================ concurrency, index, restart


def test_query_paging_during_concurrent_appends():
    with Server() as s:
        for i in range(20):
            append_ok(s, f"order-{i % 4}", [ev("order.placed", tags=["a"]), ev("noise")])
        writers_done = threading.Event()
        errors = []

        def writer(w):
            rng = random.Random(w)
            c = s.connect()
            try:
                for i in range(120):
                    batch = [ev(rng.choice(["order.placed", "order.shipped", "noise"]),
                                data=[w, i, j], tags=rng.sample(["a", "b"], rng.randint(0, 2)))
                             for j in range(rng.randint(1, 4))]
                    st, _, ans = s.append(f"{rng.choice(['order', 'user'])}-{rng.randint(1, 9)}",
                                          batch, conn=c)
                    if st != 201:
                        errors.append(f"writer {w}: {st} {ans!r}")
                        return
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"writer {w}: {type(e).__name__}: {e}")
            finally:
                c.close()

        def tail(q, post, out):
            """Pages forward from 1; at the end of a snapshot continues after its head until
            the writers are done before a page starts. out gets (positions, last head)."""
            q = dict(q, **{"from": 1})
            seen = []
            try:
                for _ in range(20000):
                    finished = writers_done.is_set()
                    page = (post_page(s, q, strict=False) if post
                            else get_page(s, q, strict=False))
                    seen.extend(positions(page["events"]))
                    if page["hasMore"]:
                        q["from"] = page["next"]
                        continue
                    if finished:
                        out.append((seen, page["head"]))
                        return
                    q["from"] = page["head"] + 1
                    time.sleep(0.001)
                errors.append(f"tail {q!r} did not end")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"tail {'POST' if post else 'GET'}: {type(e).__name__}: {e}")

        ws = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(2)]
        q_get = {"types": ["order.*"], "tags": ["a"], "limit": 3}
        q_post = {"items": [{"types": ["order.placed"]}, {"tags": ["b"]}],
                  "categories": ["order"], "limit": 4}
        out_get, out_post = [], []
        readers = [threading.Thread(target=tail, args=(q_get, False, out_get), daemon=True),
                   threading.Thread(target=tail, args=(q_post, True, out_post), daemon=True)]
        for t in ws + readers:
            t.start()
        # meanwhile, page backward from the head of the first snapshot
        back = {"types": ["order.placed"], "direction": "backward", "limit": 5}
        back_seen, back_head = [], None
        for _ in range(5000):
            page = get_page(s, back, strict=False)
            if back_head is None:
                back_head = page["head"]
            back_seen.extend(positions(page["events"]))
            if not page["hasMore"]:
                break
            back["from"] = page["next"]
        for t in ws:
            t.join(60)
        writers_done.set()
        for t in readers:
            t.join(60)
        check(not any(t.is_alive() for t in ws + readers), "threads did not finish")
        check(not errors, "; ".join(errors[:5]))
        model = Model(s.read_log())
        check(model.head >= 40 + 2 * 120, f"head {model.head}")
        for name, q, out in (("GET", get_to_q(q_get), out_get), ("POST", q_post, out_post)):
            check(len(out) == 1, f"{name} tail gave no result")
            seen, last_head = out[0]
            check(last_head == model.head, f"{name}: last page head {last_head} != final "
                                           f"head {model.head}")
            want = [p for p in model.run(q) if p <= last_head]
            check(len(seen) == len(set(seen)), f"{name}: repeated positions while appending")
            missing = sorted(set(want) - set(seen))
            extra = sorted(set(seen) - set(want))
            check(not missing and not extra and seen == want,
                  f"{name} {q}: missing {missing[:10]}, unexpected {extra[:10]}")
        want = [p for p in model.run(get_to_q({"types": ["order.placed"],
                                               "direction": "backward"})) if p <= back_head]
        check(back_seen == want, f"backward paging while appending: got {len(back_seen)} "
                                 f"events, want {len(want)}; "
                                 f"missing {sorted(set(want) - set(back_seen))[:10]}")


def _fixed_queries(model, rng):
    qs_ = [({"types": ["order.*"]}, False),
           ({"category": ["user"], "tags": ["a"], "direction": "backward", "limit": 7}, False),
           ({"subject": "customers/1*", "limit": 5}, False),
           ({"streams": ["order-1", "cart"], "from": 10, "to": 250}, False),
           ({"timeFrom": fmt_us(BASE_US + 5000 * 60_000_000),
             "timeTo": fmt_us(BASE_US + 15000 * 60_000_000), "types": ["*.placed"]}, False),
           ({"asOf": model.head // 2, "tags": ["b"]}, False),
           ({"items": [{"types": ["order.placed"], "tags": ["a"]}, {"tags": ["vip", "c"]}],
             "limit": 4}, True),
           ({"selector": {"type": "or", "selectors": [
               {"type": "equals", "attr": {"subject": None}},
               {"type": "starts_with", "attr": {"event_type": "cart."}}]},
             "direction": "backward", "limit": 9}, True)]
    for _ in range(12):
        post = rng.random() < 0.5
        q = random_query(rng, model, post)
        qs_.append((q if post else q_to_get(q), post))
    return qs_


def test_query_same_results_from_tail_index_and_after_restart():
    with Server() as s:
        model = build_dataset(s, seed=16)
        rng = random.Random(1016)
        queries = _fixed_queries(model, rng)

        def run_all(label):
            return [positions(expect_query(s, model, q, post, what=label)) for q, post in queries]

        fresh = run_all("right after appending")
        # the background index catches up (not required: then this is a second tail run)
        wait_until(lambda: s.db_info().get("indexer", {}).get("indexed", 0) >= model.head,
                   timeout=10)
        indexed = run_all("after the indexer caught up")
        check(indexed == fresh, "results changed once the indexer caught up")
        s.restart()
        restarted = run_all("after a restart")
        check(restarted == fresh, "results changed after a restart")
        # new events after the restart: indexed part + tail together
        rng2 = random.Random(2016)
        for i in range(30):
            append_ok(s, rng2.choice(STREAMS), [ev(rng2.choice(TYPES), data=i,
                                                   tags=rng2.sample(TAGS, 2),
                                                   subject=rng2.choice(SUBJECTS))])
        model2 = Model(s.read_log())
        for q, post in queries:
            expect_query(s, model2, q, post, what="after restart + appends")


# ================================================================ stream listing


def streams_page(s, params, db="default"):
    path = f"/v1/databases/{db}/streams" + ("?" + qs(params) if params else "")
    st, _, page = s.get(path)
    check(st == 200, f"GET {path}: {st} {page!r}")
    check(isinstance(page, dict) and set(page) >= {"streams", "next"}, f"{path}: {page!r}")
    rows = page["streams"]
    limit = int(params.get("limit", DEFAULT_LIMIT))
    check(len(rows) <= limit, f"{path}: {len(rows)} rows > limit {limit}")
    for r in rows:
        check(set(r) == STREAM_ROW_KEYS, f"{path}: row keys {sorted(r)}")
    names = [r["stream"] for r in rows]
    check(names == sorted(names, key=lambda n: n.encode()) and len(set(names)) == len(names),
          f"{path}: not in byte order: {names}")
    if len(rows) < limit:
        check(page["next"] is None, f"{path}: short page with next {page['next']!r}")
    if page["next"] is not None:
        check(rows and page["next"] == names[-1], f"{path}: next {page['next']!r} is not the "
                                                  f"last name {names[-1:]}")
    return page


def list_all(s, params, db="default"):
    params = dict(params)
    out = []
    for _ in range(2000):
        page = streams_page(s, params, db)
        out.extend(page["streams"])
        if page["next"] is None:
            return out
        params["after"] = page["next"]
    raise AssertionError(f"stream listing {params} does not end")


def stream_rows_from_log(log, upto=None):
    """What the listing must say for every stream, from the log (as of position upto)."""
    rows = {}
    for e in log:
        if upto is not None and e["position"] > upto:
            break
        r = rows.get(e["stream"])
        if r is None:
            r = rows[e["stream"]] = {"stream": e["stream"], "firstPosition": e["position"],
                                     "created": e["recorded"]}
        r["version"] = e["version"]
        r["lastPosition"] = e["position"]
        r["updated"] = e["recorded"]
    return rows


def check_rows(got, want_rows, what):
    names = [r["stream"] for r in got]
    want_names = sorted(want_rows, key=lambda n: n.encode())
    check(names == want_names, f"{what}: streams {names}, want {want_names}")
    for r in got:
        w = want_rows[r["stream"]]
        for k in ("version", "firstPosition", "lastPosition"):
            check(r[k] == w[k], f"{what}: {r['stream']} {k} {r[k]}, want {w[k]}")
        for k in ("created", "updated"):
            check(parse_us(r[k]) == parse_us(w[k]), f"{what}: {r['stream']} {k} {r[k]}, "
                                                    f"want {w[k]}")


def test_list_streams_sorted_by_bytes_with_rows():
    with Server() as s:
        st, _, page = s.get("/v1/databases/default/streams")
        check(st == 200 and page == {"streams": [], "next": None}, f"empty: {st} {page!r}")
        names = ["b", "a", "B", "Z-1", "a-b", "a_b", "é", "日本", "a/b", "a b", "~", "0",
                 "ab", "a:b", "A"]
        for k in range(2):
            for i, n in enumerate(names):
                if k == 0 or i % 3 == 0:
                    append_ok(s, n, [ev("t", data=[k, i])])
        page = streams_page(s, {})
        check(page["next"] is None, f"all fit in one page: {page['next']!r}")
        log = s.read_log()
        check_rows(page["streams"], stream_rows_from_log(log), "listing")
        for r in page["streams"]:
            st, _, info = s.get(f"/v1/databases/default/streams/{quote(r['stream'])}")
            check(st == 200 and info == r, f"row {r!r} != stream info {info!r}")


def test_list_streams_prefix_and_category():
    with Server() as s:
        names = ["order-1", "order_2", "order:3", "order/4", "order", "orders-5", "ordex",
                 "order.6", "user-1", "user", "x-order-1", "Order-7"]
        for n in names:
            append_ok(s, n, [ev("t", data=n)])
        rows = stream_rows_from_log(s.read_log())

        def subset(pred):
            return {n: r for n, r in rows.items() if pred(n)}

        for prefix in ("order", "order-", "orders", "o", "user-", "x", "nope", "O"):
            got = list_all(s, {"prefix": prefix})
            check_rows(got, subset(lambda n: n.startswith(prefix)), f"prefix={prefix}")
        for cat in ("order", "orders", "user", "x", "order.6", "Order", "nope"):
            got = list_all(s, {"category": cat})
            check_rows(got, subset(lambda n: category_of(n) == cat), f"category={cat}")
        got = list_all(s, {"category": "order", "prefix": "order_"})
        check_rows(got, subset(lambda n: n == "order_2"), "category=order&prefix=order_")
        got = list_all(s, {"prefix": "order", "limit": 2})
        check_rows(got, subset(lambda n: n.startswith("order")), "prefix=order paged by 2")


def test_list_streams_paging_after_and_limit():
    with Server() as s:
        names = [f"s-{i:03d}" for i in range(105)]
        rng = random.Random(5)
        for n in rng.sample(names, len(names)):
            append_ok(s, n, [ev("t", data=n)])
        page = streams_page(s, {})
        got = [r["stream"] for r in page["streams"]]
        check(got == names[:100] and page["next"] == names[99],
              f"default limit 100: {len(got)} rows, next {page['next']!r}")
        page = streams_page(s, {"after": page["next"]})
        check([r["stream"] for r in page["streams"]] == names[100:] and page["next"] is None,
              f"second page {page!r}")
        for limit in (1, 4, 7, 104, 105, 1000):
            got = [r["stream"] for r in list_all(s, {"limit": limit})]
            check(got == names, f"limit={limit} paged: {len(got)} rows")
        page = streams_page(s, {"limit": 3})
        check([r["stream"] for r in page["streams"]] == names[:3] and page["next"] == names[2],
              f"limit=3: {page!r}")
        # after a name that is not a stream continues after it in byte order
        page = streams_page(s, {"after": "s-0505", "limit": 2})
        check([r["stream"] for r in page["streams"]] == ["s-051", "s-052"],
              f"after=s-0505: {page!r}")
        page = streams_page(s, {"after": "a"})
        check([r["stream"] for r in page["streams"]] == names[:100], "after=a")
        page = streams_page(s, {"after": names[-1]})
        check(page["streams"] == [] and page["next"] is None, f"after the last {page!r}")
        got = [r["stream"] for r in list_all(s, {"prefix": "s-10", "limit": 2})]
        check(got == [n for n in names if n.startswith("s-10")], f"prefix s-10 paged: {got}")


def test_list_streams_as_of():
    with Server() as s:
        plan = ["a-1", "b-1", "a-1", "c-1", "b-1", "a-1", "d-1", "c-1"]
        for i, n in enumerate(plan):
            append_ok(s, n, [ev("t", data=i)])
            time.sleep(0.002)
        log = s.read_log()
        for upto in (1, 2, 3, 4, 6, 8, 50):
            got = list_all(s, {"asOf": upto})
            check_rows(got, stream_rows_from_log(log, upto), f"asOf={upto}")
            got = list_all(s, {"asOf": upto, "limit": 1, "prefix": "a"})
            check_rows(got, {n: r for n, r in stream_rows_from_log(log, upto).items()
                             if n.startswith("a")}, f"asOf={upto} prefix=a")


# ================================================================ asOf on stream reads


def test_stream_info_and_read_as_of_position():
    with Server() as s:
        for i in range(1, 7):
            append_ok(s, "s-1" if i % 2 == 0 else "o-1", [ev("t", data=i)])
        append_ok(s, "late-1", [ev("t", data=7)])
        log = s.read_log()
        base = "/v1/databases/default/streams"
        st, _, info = s.get(f"{base}/s-1?asOf=4")
        check(st == 200 and info["version"] == 2 and info["firstPosition"] == 2 and
              info["lastPosition"] == 4, f"info asOf=4: {st} {info!r}")
        check(parse_us(info["created"]) == parse_us(log[1]["recorded"]) and
              parse_us(info["updated"]) == parse_us(log[3]["recorded"]),
              f"created/updated as of 4: {info!r}")
        st, _, info = s.get(f"{base}/s-1?asOf=5")
        check(st == 200 and info["version"] == 2 and info["lastPosition"] == 4,
              f"info asOf=5: {info!r}")
        st, _, info = s.get(f"{base}/s-1?asOf=100")
        check(st == 200 and info["version"] == 3 and info["lastPosition"] == 6,
              f"info asOf past head: {info!r}")
        expect_error(s.get(f"{base}/s-1?asOf=1"), 404, "stream_not_found")
        expect_error(s.get(f"{base}/late-1?asOf=6"), 404, "stream_not_found")
        st, _, info = s.get(f"{base}/late-1?asOf=7")
        check(st == 200 and info["version"] == 1, f"late-1 asOf=7: {info!r}")

        st, _, page = s.get(f"{base}/s-1/events?asOf=5")
        check(st == 200 and [e["version"] for e in page["events"]] == [1, 2] and
              page["version"] == 2 and page["next"] is None, f"read asOf=5: {st} {page!r}")
        check(page["events"] == [log[1], log[3]], "events read as of 5 differ from the log")
        st, _, page = s.get(f"{base}/s-1/events?asOf=5&direction=backward")
        check(st == 200 and [e["version"] for e in page["events"]] == [2, 1],
              f"backward asOf=5: {page!r}")
        st, _, page = s.get(f"{base}/s-1/events?asOf=6&limit=1")
        check(st == 200 and [e["version"] for e in page["events"]] == [1] and page["next"] == 2,
              f"paged asOf=6: {page!r}")
        st, _, page = s.get(f"{base}/s-1/events?asOf=6&limit=1&from=3")
        check(st == 200 and [e["version"] for e in page["events"]] == [3] and
              page["next"] is None, f"last page asOf=6: {page!r}")
        st, _, page = s.get(f"{base}/s-1/events?asOf=4&from=3")
        check(st == 200 and page["events"] == [] and page["next"] is None,
              f"from beyond the version as of 4: {st} {page!r}")
        expect_error(s.get(f"{base}/s-1/events?asOf=1"), 404, "stream_not_found")
        expect_error(s.get(f"{base}/late-1/events?asOf=6"), 404, "stream_not_found")


def test_stream_info_and_read_as_of_time():
    with Server() as s:
        for i in range(4):
            append_ok(s, "t-1", [ev("t", data=i)])
            time.sleep(0.003)
        append_ok(s, "t-2", [ev("t", data=9)])
        log = s.read_log()
        rec = [e["recorded"] for e in log]
        base = "/v1/databases/default/streams"
        st, _, info = s.get(f"{base}/t-1?asOfTime={quote(rec[1])}")
        check(st == 200 and info["version"] == 2 and info["lastPosition"] == 2,
              f"info asOfTime=rec[1]: {st} {info!r}")
        st, _, info = s.get(f"{base}/t-1?asOfTime={quote(fmt_us(parse_us(rec[2]) - 1, 60))}")
        check(st == 200 and info["version"] == 2, f"info just before commit 3: {info!r}")
        expect_error(s.get(f"{base}/t-1?asOfTime=2000-01-01T00:00:00Z"), 404,
                     "stream_not_found")
        expect_error(s.get(f"{base}/t-2?asOfTime={quote(rec[3])}"), 404, "stream_not_found")
        st, _, page = s.get(f"{base}/t-1/events?asOfTime={quote(rec[2])}")
        check(st == 200 and [e["version"] for e in page["events"]] == [1, 2, 3] and
              page["version"] == 3, f"read asOfTime=rec[2]: {st} {page!r}")
        expect_error(s.get(f"{base}/t-1/events?asOfTime=2000-01-01T00:00:00Z"), 404,
                     "stream_not_found")


# ================================================================ bad input


def test_query_bad_get_parameters():
    with Server() as s:
        append_ok(s, "seed-1", [ev("t")])
        p = events_path()
        cases = [("types=a*b", "types"), ("types=a,,b", "types"), ("types=a,", "types"),
                 ("types=", "types"), ("tags=a,,b", "tags"),
                 ("streams=a,,b", "streams"), ("category=a,,b", "category"),
                 ("limit=0&types=t", "limit"), ("limit=1001&types=t", "limit"),
                 ("limit=abc&types=t", "limit"), ("limit=-1&types=t", "limit"),
                 ("from=abc&types=t", "from"), ("from=1.5&types=t", "from"),
                 ("to=abc", "to"), ("to=-1&types=t", "to"), ("to=1e3&types=t", "to"),
                 ("direction=sideways&types=t", "direction"),
                 ("direction=BACKWARD&types=t", "direction"),
                 ("recordedFrom=yesterday", "recordedFrom"),
                 ("recordedTo=2026-13-01T00:00:00Z", "recordedTo"),
                 ("timeFrom=2026-11-28", "timeFrom"),
                 ("timeTo=2026-11-28T10:00:00", "timeTo"),
                 ("timeTo=2026-02-30T00:00:00Z", "timeTo"),
                 ("asOf=abc", "asOf"), ("asOf=-1", "asOf"), ("asOf=2.5", "asOf"),
                 ("asOfTime=now", "asOfTime"), ("asOfTime=2026-11-28T25:00:00Z", "asOfTime"),
                 ("types=" + ",".join(f"t{i}" for i in range(65)), "types")]
        for q, field in cases:
            expect_error(s.get(f"{p}?{q}"), 400, "invalid_parameter", field)
        # the limits themselves are fine
        for q in ["types=" + ",".join(f"t{i}" for i in range(64)), "types=t&limit=1",
                  "types=t&limit=1000", "asOf=1", "timeFrom=2026-11-28T10:00:00%2B02:00"]:
            st, _, body = s.get(f"{p}?{q}")
            check(st == 200, f"{q}: {st} {body!r}")
        # stream reads, stream info and the listing check asOf / asOfTime too
        for path in ["/v1/databases/default/streams/seed-1",
                     "/v1/databases/default/streams/seed-1/events",
                     "/v1/databases/default/streams"]:
            expect_error(s.get(f"{path}?asOf=abc"), 400, "invalid_parameter", "asOf")
            expect_error(s.get(f"{path}?asOfTime=soon"), 400, "invalid_parameter", "asOfTime")
        for q, field in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit")]:
            expect_error(s.get(f"/v1/databases/default/streams?{q}"), 400, "invalid_parameter",
                         field)


def _deep_selector(levels):
    """levels nested selector objects: levels-1 'and' wrappers around one leaf."""
    sel = {"type": "equals", "attr": {"event_type": "t"}}
    for _ in range(levels - 1):
        sel = {"type": "and", "selectors": [sel, {"type": "starts_with",
                                                  "attr": {"stream": "s"}}]}
    return sel


def _or_of(n):
    return {"type": "or", "selectors": [{"type": "equals", "attr": {"stream": f"s-{i}"}}
                                        for i in range(n)]}


def test_query_bad_post_bodies():
    with Server() as s:
        append_ok(s, "seed-1", [ev("t")])
        p = query_path()
        leaf = {"type": "equals", "attr": {"stream": "seed-1"}}
        cases = [({"typez": ["t"]}, "typez"),
                 ({"types": "t"}, "types"), ({"types": ["a*b"]}, "types"),
                 ({"types": [""]}, "types"), ({"types": [1]}, "types"),
                 ({"types": [f"t{i}" for i in range(65)]}, "types"),
                 ({"tags": "a"}, "tags"), ({"tags": {"a": 1}}, "tags"), ({"tags": [7]}, "tags"),
                 ({"streams": "seed-1"}, "streams"), ({"categories": "seed"}, "categories"),
                 ({"subjects": "x"}, "subjects"),
                 ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "10"}, "limit"),
                 ({"limit": 1.5}, "limit"),
                 ({"from": "1"}, "from"), ({"from": -1}, "from"), ({"to": "x"}, "to"),
                 ({"direction": "up"}, "direction"), ({"direction": 1}, "direction"),
                 ({"recordedFrom": "bad"}, "recordedFrom"), ({"recordedTo": 5}, "recordedTo"),
                 ({"timeFrom": "2026-11-28"}, "timeFrom"), ({"timeTo": 17}, "timeTo"),
                 ({"asOf": "5"}, "asOf"), ({"asOf": -2}, "asOf"),
                 ({"asOfTime": "x"}, "asOfTime"),
                 ({"items": {"types": ["t"]}}, "items"), ({"items": [1]}, "items"),
                 ({"items": [{"typez": ["t"]}]}, "items"),
                 ({"items": [{"types": "t"}]}, "items"),
                 ({"items": [{"tags": "a"}]}, "items"),
                 ({"items": [{"types": ["a*b"]}]}, "items"),
                 ({"items": [{"types": ["t"]}] * 65}, "items"),
                 ({"selector": {"type": "regex", "attr": {"stream": "s"}}}, "selector"),
                 ({"selector": {"type": "equals", "attr": {"colour": "red"}}}, "selector"),
                 ({"selector": {"type": "equals", "attr": {"stream": 5}}}, "selector"),
                 ({"selector": {"type": "and"}}, "selector"),
                 ({"selector": {"type": "or", "selectors": leaf}}, "selector"),
                 ({"selector": "stream=s"}, "selector"),
                 ({"selector": _deep_selector(10)}, "selector"),
                 ({"selector": _deep_selector(12)}, "selector"),
                 ({"selector": _or_of(65)}, "selector"),
                 ({"selector": {"type": "and", "selectors": [_or_of(2) for _ in range(7)]}},
                  "selector")]
        for body, field in cases:
            expect_bad(s.post(p, body), 400, "invalid_request", field)
        # items and selector together
        body = expect_error(s.post(p, {"items": [{"types": ["t"]}], "selector": leaf}), 400,
                            "invalid_request")
        check(body["error"].get("field") in ("items", "selector"),
              f"items+selector: field {body['error'].get('field')!r}")
        # not JSON, not an object
        expect_error(s.post(p, '{"types": [', headers={"Content-Type": "application/json"}),
                     400, "invalid_json")
        expect_error(s.post(p, '{"types": ["t"],}', headers={"Content-Type": "application/json"}),
                     400, "invalid_json")
        expect_error(s.post(p, []), 400, "invalid_request")
        # the limits themselves are accepted
        for body in ({"selector": _deep_selector(8)}, {"selector": _or_of(64)},
                     {"items": [{"types": [f"t{i}"]} for i in range(64)]},
                     {"selector": {"type": "and", "selectors": [_or_of(2) for _ in range(6)]}},
                     {"types": [f"t{i}" for i in range(64)]}, {"limit": 1000},
                     {"timeFrom": "2026-11-28T10:00:00+02:00"}):
            st, _, ans = s.post(p, body)
            check(st == 200 and isinstance(ans, dict) and "hasMore" in ans,
                  f"POST {str(body)[:120]}: {st} {ans!r}")
        st, _, ans = s.post(p, {"selector": _deep_selector(8)})
        check(positions(ans["events"]) == [1], f"8-deep selector matches seed-1: {ans!r}")


def test_query_unknown_database_and_methods():
    with Server() as s:
        expect_error(s.get("/v1/databases/nope/events?types=t"), 404, "database_not_found")
        expect_error(s.post("/v1/databases/nope/query", {"types": ["t"]}), 404,
                     "database_not_found")
        expect_error(s.get("/v1/databases/nope/streams"), 404, "database_not_found")
        expect_error(s.get("/v1/databases/nope/streams/s/events?asOf=1"), 404,
                     "database_not_found")
        st, h, body = s.get("/v1/databases/default/query")
        expect_error((st, h, body), 405, "method_not_allowed")
        check("POST" in h.get("allow", ""), f"Allow {h.get('allow')!r}")
        # queries are per database
        st, _, _ = s.post("/v1/databases", {"name": "other"})
        check(st == 201, "create database other")
        append_ok(s, "o-1", [ev("t")], db="other")
        append_ok(s, "d-1", [ev("t"), ev("t")])
        page = get_page(s, {"types": ["t"]}, db="other")
        check([e["stream"] for e in page["events"]] == ["o-1"] and page["head"] == 1,
              f"other database query: {page!r}")
        page = post_page(s, {"types": ["t"]}, db="other")
        check(len(page["events"]) == 1 and page["head"] == 1, f"other database POST {page!r}")
        page = streams_page(s, {}, db="other")
        check([r["stream"] for r in page["streams"]] == ["o-1"], f"other listing {page!r}")
