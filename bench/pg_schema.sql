-- PostgreSQL 15 baseline for bench/run.sh: an event store with the same guarantees as an
-- Annals append (optimistic concurrency on a per-stream version, durable on commit).
CREATE TABLE streams (
    stream  text PRIMARY KEY,
    version int NOT NULL
);
CREATE TABLE events (
    position bigserial PRIMARY KEY,
    stream   text NOT NULL,
    version  int NOT NULL,
    type     text NOT NULL,
    data     jsonb NOT NULL,
    recorded timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, version)
);

-- append(stream, expected, type, data): expected < 0 means "any" (no check), 0 means the
-- stream must not exist, n > 0 means the stream's version must be n. The stream row is
-- locked (FOR UPDATE) until commit, so concurrent appends to one stream serialize, as they
-- must to hand out gap-free versions. Raises on a mismatch; returns the new version.
CREATE FUNCTION append(p_stream text, p_expected int, p_type text, p_data jsonb)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    cur int;
BEGIN
    INSERT INTO streams (stream, version) VALUES (p_stream, 0) ON CONFLICT DO NOTHING;
    SELECT version INTO cur FROM streams WHERE stream = p_stream FOR UPDATE;
    IF p_expected >= 0 AND cur <> p_expected THEN
        RAISE EXCEPTION 'wrong_expected_version: stream % is at %, expected %',
            p_stream, cur, p_expected USING ERRCODE = 'P0001';
    END IF;
    INSERT INTO events (stream, version, type, data) VALUES (p_stream, cur + 1, p_type, p_data);
    UPDATE streams SET version = cur + 1 WHERE stream = p_stream;
    RETURN cur + 1;
END $$;
