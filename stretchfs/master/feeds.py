"""Change feeds on Redis Streams: cursors, reads after a cursor, 410, long-poll.

Every change the master applies is XADDed to the feed's stream by the same
Lua script that applies it, so a change and its feed entry are atomic.  The
cursor is a stream id.  A read after cursor `c` answers the entries with an
id greater than `c` (XRANGE with an exclusive start).  The stream is trimmed
with `MAXLEN ~ [master] feed_max_len`; a cursor is *gone* (HTTP 410, the
reader reloads the snapshot) when entries were trimmed and the cursor is
older than the first retained entry, when the cursor is newer than anything
the stream ever held (the database was reset), or when the entry the cursor
names no longer exists: every cursor the master hands out is a real entry
id, so a Redis that lost its last writes (a crash between AOF fsyncs) and
has taken new ones since still sends its readers back to the snapshot.

Long-poll: the master is the only writer of both feeds, so the process that
XADDs also wakes its waiting readers (`FeedWaiters.notify`) at once; a
waiter that hears nothing answers with no changes when its `wait` (on the
injected clock) runs out.

Followers: a prism names itself in its feed reads (`reader=`), so the master
knows where each follower stands (`FeedFollowers`).  A stopping master uses
that to let every follower fetch the changes it acknowledged before it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from stretchfs.errors import Gone
from stretchfs.master.lua import LuaScript, text
from stretchfs.redisstore import RedisStore

# Payload bytes per feed page by default: readers refuse replies past 16 MiB
# (wire.http.MAX_REPLY_BYTES), and JSON re-encoding may grow a payload.
FEED_PAGE_MAX_BYTES = 4 * 1024 * 1024

_ID_HELPERS = """
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
"""

# KEYS[1] stream; ARGV[1] after (normalised id), ARGV[2] limit (0 = state only)
# -> {'gone', last} or {'ok', last, entries}
FEED_READ = LuaScript(_ID_HELPERS + """
local after = ARGV[1]
local limit = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  if less('0-0', after) then return {'gone', '0-0'} end
  return {'ok', '0-0', {}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local f = {}
for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
local last = f['last-generated-id']
if less(last, after) then return {'gone', last} end
if tonumber(f['entries-added']) > tonumber(f['length']) then
  local first = f['first-entry']
  if first then
    if less(after, first[1]) then return {'gone', last} end
  elseif after ~= last then
    return {'gone', last}
  end
end
if after ~= '0-0' and #redis.call('XRANGE', KEYS[1], after, after) == 0 then
  return {'gone', last}
end
if limit == 0 then return {'ok', last, {}} end
return {'ok', last, redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', limit)}
""")


@dataclass
class FeedPage:
    """Changes after a cursor, and the cursor to continue from."""

    cursor: str
    entries: list[bytes] = field(default_factory=list)


async def last_cursor(redis: RedisStore, stream: str) -> str:
    """The id of the newest entry ever added to `stream` ("0-0" when none)."""
    reply = await FEED_READ.run(redis, [stream], ["0-0", 0])
    return text(reply[1])


async def read_feed(redis: RedisStore, stream: str, after: str, limit: int,
                    max_bytes: int) -> FeedPage:
    """Entry payloads after `after` (at most `limit` entries and, past the first,
    `max_bytes` of payload, so a page of large entries stays well under what a
    reader accepts); Gone when `after` was trimmed."""
    reply = await FEED_READ.run(redis, [stream], [after, limit])
    if text(reply[0]) == "gone":
        raise Gone("feed cursor {} is no longer retained: reload the snapshot".format(after))
    entries = reply[2] or []
    payloads: list[bytes] = []
    size = 0
    cursor = after
    for entry_id, values in entries:
        # values is the flat field/value list: ["c", payload]
        payload = values[1]
        if payloads and size + len(payload) > max_bytes:
            break
        cursor = text(entry_id)
        payloads.append(payload)
        size += len(payload)
    return FeedPage(cursor=cursor, entries=payloads)


class FeedWaiters:
    """Readers waiting for a feed to move; woken by the writer or by their timeout."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: dict[str, list[Deferred[bool]]] = {}
        self._generation: dict[str, int] = {}

    def generation(self, feed: str) -> int:
        """A number that grows with every notification of `feed`."""
        return self._generation.get(feed, 0)

    def waiting(self, feed: str) -> int:
        """How many readers wait on `feed` now."""
        return len(self._waiting.get(feed, []))

    def notify(self, feed: str) -> None:
        """`feed` changed: wake every reader waiting on it."""
        self._generation[feed] = self.generation(feed) + 1
        for d in self._waiting.pop(feed, []):
            if not d.called:
                d.callback(True)

    def wait(self, feed: str, seconds: float) -> Deferred[bool]:
        """Fires True when `feed` is notified, False after `seconds`."""
        timer: list[IDelayedCall] = []

        def forget(_: object = None) -> None:
            waiting = self._waiting.get(feed, [])
            if d in waiting:
                waiting.remove(d)
            if timer and timer[0].active():
                timer[0].cancel()

        def cancel(_: Deferred[bool]) -> None:
            forget()

        d: Deferred[bool] = Deferred(cancel)
        self._waiting.setdefault(feed, []).append(d)
        timer.append(self._clock.callLater(seconds, self._expire, d))

        def done(result: object) -> object:
            forget()
            return result

        d.addBoth(done)
        return d

    @staticmethod
    def _expire(d: Deferred[bool]) -> None:
        if not d.called:
            d.callback(False)


# A follower re-polls at once after an answer (or within its 1 s retry): one not heard
# of for this long has stopped following.
FOLLOWER_IDLE_SECONDS = 5.0


def cursor_order(cursor: str) -> tuple[int, int]:
    """A stream id as a sortable (ms, seq) pair."""
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class _Follower:
    after: str
    seen: float
    reading: int = 0


class FeedFollowers:
    """Named readers of each feed: the cursor each last read from, and whether a read is open."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._followers: dict[tuple[str, str], _Follower] = {}

    def __bool__(self) -> bool:
        return bool(self._followers)

    def reading(self, feed: str, reader: str, after: str) -> None:
        """`reader` asks for `feed` after `after` (so it holds everything up to it)."""
        follower = self._followers.setdefault((feed, reader), _Follower(after, 0.0))
        follower.after = after
        follower.seen = self._clock.seconds()
        follower.reading += 1

    def answered(self, feed: str, reader: str) -> None:
        """A read of `reader` was answered."""
        follower = self._followers.get((feed, reader))
        if follower is not None:
            follower.reading = max(0, follower.reading - 1)
            follower.seen = self._clock.seconds()

    def gone(self, feed: str, reader: str) -> None:
        """A read of `reader` was cut (the reader went away): stop counting it."""
        self._followers.pop((feed, reader), None)

    def behind(self, feed: str, last: str) -> list[str]:
        """Followers of `feed` still reading it that have not asked past `last`."""
        now = self._clock.seconds()
        for key, follower in list(self._followers.items()):
            if not follower.reading and now - follower.seen > FOLLOWER_IDLE_SECONDS:
                del self._followers[key]
        target = cursor_order(last)
        return sorted(reader for (name, reader), follower in self._followers.items()
                      if name == feed and cursor_order(follower.after) < target)


async def long_poll(waiters: FeedWaiters, feed: str, wait: float,
                    read: Callable[[], Awaitable[FeedPage]]) -> FeedPage:
    """Read the feed; when it has nothing new, wait up to `wait` seconds once and re-read."""
    generation = waiters.generation(feed)
    page: FeedPage = await read()
    if page.entries or wait <= 0:
        return page
    if waiters.generation(feed) == generation:
        await waiters.wait(feed, wait)
    return await read()
