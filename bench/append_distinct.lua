-- (a) Single-event durable appends, each connection to its own streams.
-- wrk's setup() runs per thread, not per connection, and request() does not know the
-- connection, so each request goes to a stream named by the thread, a random per-thread
-- suffix and a per-thread counter (mod 10000). A connection has one request in flight, and
-- the 32 connections of a thread take consecutive counter values, so no two in-flight
-- requests ever share a stream: every connection appends to streams no other connection is
-- writing. expectedVersion is left at its default ("any").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_common.lua")

function init(args)
  seed_random()
  prefix = unique_prefix("d")
  n = 0
  body = '{"events":[{"type":"bench.appended","data":{"n":1,"text":"hello world"}}]}'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local path = string.format("/v1/databases/default/streams/%s-%d/events", prefix, n % 10000)
  return wrk.format("POST", path, nil, body)
end
