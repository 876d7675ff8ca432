-- (h) Single-event durable appends as in append_distinct.lua, each with a new Idempotency-Key
-- (so every request is new and stores its key and answer in the same batch as its event).
-- Compare with (a): the cost of a safe retry.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "append_distinct.lua")

local distinct_request = request
local keys = 0

function request()
  keys = keys + 1
  wrk.headers["Idempotency-Key"] = string.format("%s-%d", prefix, keys)
  return distinct_request()
end
