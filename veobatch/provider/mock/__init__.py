"""A local stand-in for the Veo relay API and Google's Gemini API, with each one's habits,
for tests and dry runs.

It speaks the relay's two endpoints over real HTTP, with the relay's error shapes (see
docs/relay-api.md), and, under `/v1beta/`, Google's (see `gemini.py` and docs/gemini-api.md),
on the same port, with the same key, limit, balance and tasks:

- a sliding-window request limit over every request that arrives, answered with 429 and a
  Chinese message, without Retry-After;
- a wrong key answered 401 (`无效的令牌`); a balance that runs out, 403
  `insufficient_user_quota`; a body without prompt, model or images, 400;
- tasks that take `task_seconds` and end in FAILURE at `failure_rate`;
- faults on demand, asked for by a marker in the prompt, so a test can give each row its own:
  `[mock:status=502]` (502 is an HTML page, like a proxy's), `[mock:drop-before]` (connection
  closed before a task exists), `[mock:drop-after]` (task created, then the connection
  closed), `[mock:slow=SECONDS]` (task created, answer late), `[mock:fail]` (the task ends in
  FAILURE), `[mock:no-task-id]` (200 without a task_id), `[mock:task-id-size=N]` (a task id
  N characters long), `[mock:cut-video]` (the first download of the video stops halfway),
  `[mock:drip=SECONDS]` (task created, its answer sent a byte every SECONDS, status line and
  headers too, as a hostile relay may); `[mock:filtered]` (the task ends in FAILURE with a
  reason of moderation; Google's: filtered, not billed), `[mock:filtered-charged]` (the same;
  Google's reason says nothing of billing), `[mock:filtered-empty]` (SUCCESS without a video);
  `drip_polls` and `drip_videos` make every poll's answer, or every video, drip the same way;
- videos served at `/_mock/videos/...`, with `Range` requests answered 206, as a CDN does:
  with `clips`, a real 3 s MP4 of a slow zoom over the task's first image (made once per
  image); else `video_bytes` of text, the same bytes for the same task;
- images checked as relays check them: only the ways of sending in `accepts` (url, data-uri,
  base64; others answered 400 in Chinese, as a relay that takes only one way does); an inline
  image must decode to a PNG, JPEG or WebP (else 400); a link is fetched after the task is
  created, as relays do (only from this machine: loopback addresses; others are counted as
  not fetched), and a link that does not answer 200 with an image fails the task. The sha256
  of every image seen is kept per prompt (`images_by_prompt` in the stats), so a test can
  prove which picture reached the provider.

A task id of its own making that it does not know (an earlier mock made it: each `veo-batch
run --mock` starts one) is answered as if it had made it then, so a stopped run resumes.

It counts tasks created per prompt (`GET /_mock/stats`), so a test can see a job paid for
twice, records every request's arrival to report the busiest window, and keeps the most
tasks it had generating at once (`peak_running`), which is what a provider's cap counts.
"""

from __future__ import annotations

from veobatch.provider.mock.server import MockProvider
from veobatch.provider.mock.state import MP4_START, MockConfig, MockState

__all__ = ["MP4_START", "MockConfig", "MockProvider", "MockState"]
