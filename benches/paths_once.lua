-- wrk script for benches/instances.sh: each request is the next line (a path and query) of the file
-- named after `--`, every line once; the thread stops when the last answer is in (wrk itself runs
-- on to the end of its duration). One thread (-t1).
local paths, next_index, answered = {}, 0, 0

function init(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
end

function request()
    next_index = next_index % #paths + 1
    return wrk.format("GET", paths[next_index])
end

function response()
    answered = answered + 1
    if answered >= #paths then
        wrk.thread:stop()
    end
end
