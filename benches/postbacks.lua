-- wrk script for benches/postbacks.sh: each request is the next line (a /postback path and query)
-- of the file named after `--`, so every postback reports a different click once.
local paths, next_index = {}, 0

function init(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
end

function request()
    next_index = next_index % #paths + 1
    return wrk.format("GET", paths[next_index])
end
