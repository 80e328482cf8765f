-- wrk pipelining: every write carries `depth` requests (default 16).
-- The standard script from wrk's scripts/pipeline.lua, with the depth as an
-- argument: wrk -t1 -c64 -d5s -s bench/pipeline.lua URL -- 16
init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, wrk.path)
   end
   req = table.concat(r)
end

request = function()
   return req
end
