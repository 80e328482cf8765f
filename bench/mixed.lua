-- wrk for bench/run's mixed-64 scenario: the paths given after `--`, in
-- turn on each connection (bench/run passes its MIXED_PATHS: three quick
-- requests for every slow one), to `uringfetch serve`:
-- wrk -t1 -c64 -d5s -s bench/mixed.lua http://127.0.0.1:PORT -- /bar?delay=0 /bar?delay=20
local reqs = {}
local i = 0

init = function(args)
   for k, p in ipairs(args) do
      reqs[k] = wrk.format("GET", p)
   end
   if #reqs == 0 then
      error("bench/mixed.lua: give the paths after --")
   end
end

request = function()
   i = i % #reqs + 1
   return reqs[i]
end
