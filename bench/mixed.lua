-- wrk for bench/run's mixed-64 scenario: three quick requests for every
-- slow one, in turn on each connection, to `uringfetch serve`:
-- wrk -t1 -c64 -d5s -s bench/mixed.lua http://127.0.0.1:PORT
local paths = { "/bar?delay=0", "/bar?delay=0", "/bar?delay=0", "/bar?delay=20" }
local reqs = {}
local i = 0

init = function(args)
   for k, p in ipairs(paths) do
      reqs[k] = wrk.format("GET", p)
   end
end

request = function()
   i = i % #reqs + 1
   return reqs[i]
end
