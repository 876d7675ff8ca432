-- (g) A query: GET /v1/databases/default/events?<query>. Argument: the query string.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_common.lua")

function init(args)
  path = "/v1/databases/default/events?" .. (args[1] or "types=bench.rare&limit=100")
end

function request()
  return wrk.format("GET", path)
end
