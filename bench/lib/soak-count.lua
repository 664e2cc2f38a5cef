-- wrk script for bench/soak and bench/flood: stop after WRK_REQUESTS
-- responses.  Use with -t1 (one Lua state counts them all); wrk's main
-- thread sleeps for -d, so the script also sends wrk's main thread a SIGINT
-- (tgkill: a plain kill may land on this thread and leave main asleep), on
-- which wrk stops and prints its report at once.  The signal is sent from a
-- background process a moment later: os.execute (system(3)) ignores SIGINT
-- in wrk while it runs.
local limit = tonumber(os.getenv("WRK_REQUESTS") or "0")
local n, pid = 0, nil

function init(args)
    local f = io.open("/proc/self/stat")
    pid = f:read("*n")
    f:close()
end

function response(status, headers, body)
    n = n + 1
    if limit > 0 and n == limit then
        wrk.thread:stop()
        os.execute(string.format("(sleep 0.05; perl -e 'require q(syscall.ph);"
            .. " syscall(&SYS_tgkill, %d, %d, 2)') &", pid, pid))
    end
end
