-- wrk script for benches/postbacks.sh and benches/instances.sh: each request is the next line (a path
-- and query) of the file named after `--`, so every postback reports a different click once. With
-- `once` after the file name, the thread stops when the last line's answer is in (wrk itself runs on
-- to the end of its duration); otherwise the lines are sent again from the first. One thread (-t1).
local paths, next_index, answered, once = {}, 0, 0, false

function init(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    once = args[2] == "once"
end

function request()
    next_index = next_index % #paths + 1
    return wrk.format("GET", paths[next_index])
end

function response()
    answered = answered + 1
    if once and answered >= #paths then
        wrk.thread:stop()
    end
end
