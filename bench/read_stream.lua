-- (d) Reading a stream's first page: GET .../streams/{s}/events?limit=N.
-- Arguments: stream name (default "bench-read"), limit (default 100).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_common.lua")

function init(args)
  local stream = args[1] or "bench-read"
  local limit = args[2] or "100"
  path = "/v1/databases/default/streams/" .. stream .. "/events?limit=" .. limit
end

function request()
  return wrk.format("GET", path)
end
