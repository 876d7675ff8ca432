"""What one request, session or database must never see of another, and where DeReg lives
(docs/dialects/deql.md "Where things are stored", "Sessions and INSPECT"): session tables stay
in their session on shared SQL workers, tables SQLite could not load are refused, a decision in
a script never reads a session table, DeReg is a logic-layer document that a database's
retention, a foreign write and a re-made database cannot break, stream reads follow the same
rules as scans (tag, binary collation), REAL keys are refused, and a rejection never shows a
SENSITIVE value however the STATE AS names it."""
import json

from deql_client import BANK, DeQL, decode_many, error, records, registry_server
from harness import Server, check


def test_session_tables_stay_in_their_session():
    s, d = registry_server("CREATE AGGREGATE A;")
    with s:
        a, b = d.with_session("alpha"), d.with_session("beta")
        a.ok_run("CREATE TABLE secret AS SELECT 'alpha-only' AS v")
        # the 8 SQL workers take turns: every one of them must have dropped alpha's table
        for _ in range(24):
            st, body = b.run("SELECT v FROM secret")
            check(st == 400 and "no such table" in body["error"], f"{st} {body}")
            st, _, body = b.post("/api/query", {"sql": "SELECT v FROM secret"})
            check(st == 400, f"{st} {body!r}"[:300])
        got = a.ok_run("SELECT v FROM secret")["results"][0]["rows"]
        check(got == [["alpha-only"]], f"{got}")


def test_tables_sqlite_could_not_load_are_refused():
    s, d = registry_server("CREATE AGGREGATE A;")
    with s:
        st, body = d.run("CREATE TABLE t AS SELECT 1 AS a, 2 AS A")
        check(st == 400 and "distinct names" in body["error"], f"{st} {body}")
        st, body = d.run("CREATE TABLE sqlite_x AS SELECT 1 AS a")
        check(st == 400, f"{st} {body}")
        st, body = d.run("CREATE TABLE t2 AS SELECT 1, 1")  # two columns named "1"
        check(st == 400, f"{st} {body}")
        # the session still works
        got = d.ok_run("CREATE TABLE ok AS SELECT 7 AS n; SELECT n FROM ok")["results"][1]
        check(got["rows"] == [[7]], f"{got}")


def test_decisions_in_scripts_never_read_session_tables():
    script = """
CREATE AGGREGATE Counter;
CREATE COMMAND Bump (counter_id STRING);
CREATE EVENT Bumped (n INT);
CREATE PROJECTION Totals AS SELECT stream_id, COUNT(*) AS n FROM DeReg."Counter$Events"
  GROUP BY stream_id;
CREATE DECISION DoBump FOR Counter ON COMMAND Bump
  STATE AS SELECT COALESCE((SELECT n FROM Totals WHERE stream_id = :counter_id), 0) AS n
  EMIT AS SELECT EVENT Bumped (n := n + 1) WHERE n < 1;
"""
    s, d = registry_server(script)
    with s:
        # a session table named like the projection, saying the counter is already at 99
        st, body = d.run("CREATE TABLE Totals AS SELECT 'c1' AS stream_id, 99 AS n; "
                         "SELECT n FROM Totals; EXECUTE Bump(counter_id := 'c1')")
        check(st == 200, f"the decision read the session table: {st} {body}")
        check(body["results"][2]["rows"][0][0] == "Bumped", f"{body}")


def test_dereg_is_a_logic_document_that_survives_foreign_writes_and_restarts():
    s, d = registry_server("CREATE AGGREGATE A; CREATE COMMAND C (a_id STRING); "
                           "CREATE EVENT E (); CREATE DECISION D FOR A ON COMMAND C "
                           "EMIT AS SELECT EVENT E ();")
    with s:
        st, _, comps = s.get("/v1/databases/default/components")
        check(st == 200, f"{st} {comps}")
        names = json.dumps(comps)
        check("deql.dereg" in names and "document" in names, f"{comps}")
        # an ordinary stream of that name is nobody's registry
        st, _, b = s.post("/v1/databases/default/streams/deql.dereg/events",
                          {"events": [{"type": "junk", "data": {"not": "a script"}}]})
        check(st in (200, 201), f"{st} {b}")
        s.restart()
        d.ok_run("CREATE AGGREGATE B;")
        st, _, text = d.get("/api/deql/export")
        check(st == 200, f"{st}")
        text = text.decode() if isinstance(text, bytes) else text
        check("CREATE AGGREGATE A" in text and "CREATE AGGREGATE B" in text, text)


def test_a_database_made_again_starts_with_an_empty_registry():
    s, d = registry_server("CREATE AGGREGATE A;")
    with s:
        st, _, b = s.request("DELETE", "/v1/databases/default")
        check(st in (200, 204), f"{st} {b}")
        st, _, b = s.post("/v1/databases", {"name": "default"})
        check(st in (200, 201), f"{st} {b}")
        st, _, info = d.get("/info")
        check(st == 200 and info["concept_counts"]["aggregates"] == 0, f"{st} {info}")
        error(d.get("/api/aggregates/A"), 404)


def test_stream_reads_see_what_scans_see():
    s, d = registry_server(BANK)
    with s:
        ok = d.execute("Account", "OpenAccount", {"account_id": "a1", "owner": "Ann",
                                                  "pin": "1234", "otp": "x"})
        check(ok[0] == 200, f"{ok}")
        # a native event in the aggregate's stream without the aggregate's tag is not its event
        st, _, b = s.post("/v1/databases/default/streams/Account-a1/events",
                          {"events": [{"type": "Deposited", "data": {"amount": 5}}]})
        check(st in (200, 201), f"{st} {b}")
        one, every = decode_many([
            d.get("/api/aggregates/Account/events/a1")[2],
            d.get("/api/aggregates/Account/events")[2]])
        check(len(one["rows"]) == 1 and len(every["rows"]) == 1, f"{one} {every}")
        # a comparison under another collation is not a one-stream read: A1 is found too
        ok = d.execute("Account", "OpenAccount", {"account_id": "A1", "owner": "Bo",
                                                  "pin": "1", "otp": "y"})
        check(ok[0] == 200, f"{ok}")
        got = d.ok_run('SELECT COUNT(*) FROM DeReg."Account$Events" '
                       "WHERE stream_id = 'a1' COLLATE NOCASE")["results"][0]["rows"]
        check(got == [[2]], f"{got}")


def test_real_keys_are_refused():
    s, d = registry_server(BANK)
    with s:
        error(d.execute("Account", "Deposit", {"account_id": 3.0, "amount": 5}), 400, "key")
        st, body = d.run("EXECUTE Deposit(account_id := 0.1, amount := 5)")
        check(st == 400 and "key" in body["error"], f"{st} {body}")
        check(s.head() == 1, f"something was appended: head {s.head()}")


def test_rejections_never_show_sensitive_values_under_other_names():
    script = BANK + """
CREATE COMMAND Login (account_id STRING, pin STRING SENSITIVE);
CREATE EVENT LoggedIn ();
CREATE DECISION DoLogin FOR Account ON COMMAND Login
  STATE AS SELECT pin AS p, data AS d, owner FROM DeReg."Account$Agg" AS g
           JOIN (SELECT data FROM DeReg."Account$Events" WHERE stream_id = :account_id
                 AND event_type = 'AccountOpened') ON 1
           WHERE g.aggregate_id = :account_id
  EMIT AS SELECT EVENT LoggedIn () WHERE p = :pin;
"""
    s, d = registry_server(script)
    with s:
        ok = d.execute("Account", "OpenAccount", {"account_id": "a1", "owner": "Ann",
                                                  "pin": "PIN-5150", "otp": "x"})
        check(ok[0] == 200, f"{ok}")
        good = d.execute("Account", "Login", {"account_id": "a1", "pin": "PIN-5150"})
        check(good[0] == 200, f"the decision must see the pin: {good}")
        bad = error(d.execute("Account", "Login", {"account_id": "a1", "pin": "0000"}), 422)
        check("PIN-5150" not in json.dumps(bad), f"a SENSITIVE value shown: {bad}")
        check(bad["state"].get("owner") == "Ann", f"the state is shown otherwise: {bad}")


def test_sixty_five_reads_of_two_tables_do_not_break_the_read_set():
    s, d = registry_server(BANK)
    with s:
        ids = ", ".join(f"'{i}'" for i in range(64))
        q = (f'SELECT COUNT(*) FROM DeReg."Account$Events" WHERE stream_id IN ({ids}) '
             'UNION ALL SELECT COUNT(*) FROM DeReg."User$Events"')
        st, _, b = d.post("/api/query", {"sql": q})
        check(st == 200, f"{st} {b!r}"[:300])
        check(records(decode_many([b])[0]) is not None, "undecodable")
        # and the server still answers
        st, _, _ = d.get("/health")
        check(st == 200, f"{st}")


def test_kept_state_answers_follow_every_change():
    """GET /api/aggregates/{agg}/{id} answers are kept by what they depend on (cache.c): each
    write, deletion, registry change and database re-made shows in the next read."""
    s, d = registry_server(BANK)
    with s:
        def owner_and_count():
            rows = d.rows("/api/aggregates/Account/a1")
            return [(r["owner"], r.get("amount")) for r in rows]
        check(owner_and_count() == [], "no events yet")
        check(owner_and_count() == [], "no events yet, asked again")
        ok = d.execute("Account", "OpenAccount", {"account_id": "a1", "owner": "Ann",
                                                  "pin": "1", "otp": "x"})
        check(ok[0] == 200, f"{ok}")
        check(owner_and_count() == [("Ann", None)], f"{owner_and_count()}")
        check(owner_and_count() == [("Ann", None)], "asked again")
        ok = d.execute("Account", "Deposit", {"account_id": "a1", "amount": 7})
        check(ok[0] == 200, f"{ok}")
        check(owner_and_count() == [("Ann", "7")], f"{owner_and_count()}")
        # a registry change (a new field in the aggregate's columns) shows at once
        d.ok_run("CREATE EVENT Renamed (nickname STRING); CREATE COMMAND Rename "
                 "(account_id STRING, nickname STRING); CREATE DECISION Rn FOR Account ON "
                 "COMMAND Rename EMIT AS SELECT EVENT Renamed (nickname := :nickname);")
        cols = [c["name"] for c in d.table("/api/aggregates/Account/a1")["columns"]]
        check("nickname" in cols, f"{cols}")
        # a stream deleted through the native API
        st, _, b = s.request("DELETE", "/v1/databases/default/streams/Account-a1")
        check(st in (200, 204), f"{st} {b}")
        check(owner_and_count() == [], f"after the deletion: {owner_and_count()}")
