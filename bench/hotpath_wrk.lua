-- wrk script for bench/hotpath.py: every request a new prompt (a cache miss), optionally streamed.
-- Arguments after `--`: API key ("" for none), "1" to stream, a run tag that keeps prompts new across runs.
local counter = 0
local key, stream, tag = "", false, "0"

function init(args)
  key = args[1] or ""
  stream = args[2] == "1"
  tag = args[3] or "0"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
end

function request()
  counter = counter + 1
  local prompt = string.format("Question %s-%d: how do I reverse a list of %d strings in Python?", tag, counter, counter)
  local body = '{"model":"auto","messages":[{"role":"user","content":"' .. prompt .. '"}]'
  if stream then body = body .. ',"stream":true,"stream_options":{"include_usage":true}' end
  return wrk.format(nil, "/v1/chat/completions", nil, body .. "}")
end
