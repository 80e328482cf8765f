-- wrk has no request count (-n), only a duration. This script gives it one:
--   wrk -t1 -c C -d 30s -s bench/count.lua URL -- N [path ...]
-- ends the run after N responses, so wrk's "requests in" and runtime cover
-- the first N responses, like `oha -n N` and `uringfetch load -n N`.
-- Optional paths are requested round-robin.
-- wrk's main thread sleeps for the whole -d and only a SIGINT cuts that
-- sleep short, so besides stopping its thread the script sends SIGINT to
-- wrk (the parent of the shell that io.popen starts; not os.execute, whose
-- system() ignores SIGINT in wrk while the shell runs). That one fork+exec
-- is counted in wrk's CPU and syscalls: ~100 syscalls, negligible over N.
-- Used by c10k-delay (N = 10000 on the 1 s /bar) and seed (N = 2, /foo /bar).
local limit = 1
local paths = {}
local sent = 0
local done = 0
local signalled = false

init = function(args)
   limit = tonumber(args[1]) or 1
   for i = 2, #args do
      paths[#paths + 1] = args[i]
   end
end

request = function()
   sent = sent + 1
   if #paths == 0 then
      return wrk.format(nil, wrk.path)
   end
   return wrk.format(nil, paths[((sent - 1) % #paths) + 1])
end

response = function(status, headers, body)
   done = done + 1
   if done >= limit then
      wrk.thread:stop()
      if not signalled then
         -- popen can fail on a loaded machine (no fork): try again on the
         -- next response rather than let wrk sleep through its whole -d.
         local p = io.popen("kill -INT $PPID")
         if p then
            p:close()
            signalled = true
         end
      end
   end
end
