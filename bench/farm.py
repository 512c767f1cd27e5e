"""A loopback feed farm for the polling benchmark: N feeds on one host.

    .venv/bin/python bench/farm.py --feeds 1000            # prints "port N", serves
    curl http://127.0.0.1:PORT/feed/7.xml
    curl http://127.0.0.1:PORT/_round/2                    # K new items per feed

Every feed is RSS 2.0 with 20-50 news items (title, link, guid, pubDate,
dc:creator, categories, an HTML description of a few paragraphs), served with an
ETag and a Last-Modified, and answered with 304 to a matching conditional GET.
A *round* number, set through `/_round/R`, adds `--new` items to every feed per
round, so "changed" polls see K new entries and the older ones roll off (an item
keeps its bytes, date included, from round to round, as a real outlet's does). About one
item in five retells a story that other feeds carry too (same headline, reworded
body, different link), so dedupe has real work to do. `--latency MS` delays each
answer, as a distant outlet would.

`--headlines templated` writes every headline from one of a few dozen templates
with one slot varying ("Weather in <city> on <date>", "<team> beat <team>"), as
wire, weather, markets and sports desks do: thousands of stored look-alikes share
all their words but one, which is what makes a candidate stage's cost grow.

The farm is an asyncio server in its own process, so it never competes with the
poller for the GIL and answers thousands of requests per second on one core. It
must stay on 127.0.0.1; it serves nothing but generated feeds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

#: the time of round 0; round R is R hours later
EPOCH = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)

_PLACES = (
    "Pakistan Islamabad Karachi Lahore Russia Moscow Kremlin China Beijing India Delhi "
    "Iran Tehran Afghanistan Kabul Turkey Ankara Ukraine Kyiv Germany Berlin France Paris "
    "Brazil Nigeria Kenya Egypt Cairo Japan Tokyo Indonesia Jakarta Mexico Canada"
).split()
_NOUNS = (
    "talks minister parliament election budget trade deal pipeline energy grid floods "
    "drought harvest wheat prices inflation court ruling protest strike railway port "
    "summit delegation sanctions exports imports security border ceasefire refugees "
    "hospital vaccine school teachers students police investigation report survey "
    "central bank interest rates currency market shares startup telecom satellite"
).split()
_VERBS = (
    "announces rejects approves delays signs expands cuts debates warns confirms "
    "suspends launches reviews extends criticises welcomes"
).split()
_FILLER = (
    "the a of to in on for with by from officials said on Tuesday according statement "
    "week month year government country region local national people new plan after "
    "before during while also has have had will would could more than about over "
    "two three several many first last spokesperson agency told reporters"
).split()


def _vocabulary(n: int) -> list[str]:
    """Made-up words, so headlines share few terms by chance (as real ones do)."""
    rng = random.Random("vocabulary")
    syllables = (
        "ka ri to mu sel van dor pe li qua zan ber tis nam gor fe hu bal kor min sha tep "
        "wu yar dan kel pol sur ven gat lom rak nes bil"
    ).split()
    words = {"".join(rng.choice(syllables) for _ in range(rng.randint(3, 4))) for _ in range(n)}
    return sorted(words)


_VOCAB = _vocabulary(30_000)
_PARAGRAPH_POOL = 3000


def _paragraphs() -> list[str]:
    """A pool of paragraphs drawn once; items pick from it, so rendering stays cheap."""
    rng = random.Random("paragraphs")
    pool = _FILLER * 6 + _NOUNS + _PLACES + _VOCAB[:2000]
    return [
        "<p>" + " ".join(rng.choice(pool) for _ in range(rng.randint(30, 70))) + ".</p>"
        for _ in range(_PARAGRAPH_POOL)
    ]


_PARAS = _paragraphs()


def _headline(rng: random.Random) -> str:
    """A place, a topic noun and made-up words: real headlines share few words by chance."""
    v = rng.choices(_VOCAB, k=5)
    return f"{rng.choice(_PLACES)} {v[0]} {v[1]} {rng.choice(_NOUNS)} {v[2]} as {v[3]} {v[4]}"


#: templated headlines: one slot ({}) varies, the rest is the desk's fixed wording
_TEMPLATES = (
    "Weather in {} on Tuesday: showers and strong winds",
    "Weather forecast for {} this weekend",
    "{} beat Lions in the cup quarter-final",
    "{} draw with Rovers after late equaliser",
    "Gold price today: {} market update",
    "Oil prices rise as {} traders watch supply",
    "Stock market close: {} index ends higher",
    "Currency rates: {} exchange rate against the dollar",
    "Court adjourns hearing in {} until next month",
    "Court ruling expected in {} fraud case",
    "Police investigate robbery in {} town centre",
    "Fire crews called to warehouse blaze in {}",
    "Traffic: delays on the {} motorway after crash",
    "Railway strike disrupts services in {}",
    "Port of {} reopens after storm",
    "Flood warning issued for {} river valley",
    "Drought hits wheat harvest in {} region",
    "Earthquake of magnitude 4 shakes {}",
    "Election results: {} district count completed",
    "Parliament debates {} budget amendment",
    "Minister visits {} hospital to open new wing",
    "Vaccine campaign starts in {} schools",
    "Teachers strike over pay in {}",
    "Students protest tuition rise at {} university",
    "Energy grid outage leaves {} without power",
    "Pipeline leak reported near {}",
    "Startup from {} raises funding for satellite launch",
    "Telecom operator expands network to {}",
    "Central bank of {} holds interest rates",
    "Inflation in {} slows for third month",
    "Trade deal talks with {} resume next week",
    "Summit delegation arrives in {}",
    "Sanctions on {} extended by six months",
    "Ceasefire holds along the {} border",
    "Refugees cross into {} as fighting continues",
    "Obituary: {} former mayor dies aged 81",
)
_SLOTS = [w.capitalize() for w in _VOCAB[::3]] + _PLACES


def _templated(rng: random.Random) -> str:
    """One of `_TEMPLATES` with its slot filled: look-alikes share every other word."""
    return rng.choice(_TEMPLATES).format(rng.choice(_SLOTS))


#: "plain" or "templated" (`--headlines`)
HEADLINES = "plain"


def _any_headline(rng: random.Random) -> str:
    return _templated(rng) if HEADLINES == "templated" else _headline(rng)


def _story_headline(story: int) -> str:
    return _any_headline(random.Random(f"story:{story}"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class NewsItem:
    """One generated news item, before it becomes RSS."""

    feed: int
    n: int
    title: str
    link: str
    guid: str
    published: datetime
    author: str
    category: str
    #: HTML: an image, the item's lead paragraph and 1-4 paragraphs from a shared pool
    description: str
    #: the shared story it retells (same headline, reworded lead), None if its own
    story: int | None


def news_item(feed: int, n: int, when: datetime, stories: int, story_base: int = 0) -> NewsItem:
    """Item `n` of `feed`, dated `when`: a pure function of its arguments.

    About one item in five retells one of `stories` shared stories, numbered from
    `story_base` (the farm uses 0; a caller spreading items over weeks can give each
    day its own stories, so retellings stay close in time as real ones do).
    """
    rng = random.Random(f"{feed}:{n}")
    shared = rng.random() < 0.2
    story = story_base + rng.randrange(0, stories) if shared else None
    title = _story_headline(story) if story is not None else _any_headline(rng)
    # the lead is the item's own (or its story's, reworded): real outlets never
    # share a first paragraph by chance; the rest comes from a shared pool
    lead_rng = random.Random(f"lead:{story}") if story is not None else rng
    lead = lead_rng.choices(_VOCAB, k=40) + lead_rng.choices(_FILLER, k=15)
    if story is not None:
        rng.shuffle(lead)
        del lead[: rng.randint(0, 8)]
    paragraphs = (
        "<p>"
        + " ".join(lead)
        + ".</p>"
        + "".join(_PARAS[rng.randrange(_PARAGRAPH_POOL)] for _ in range(rng.randint(1, 4)))
    )
    desc = f'<p><img src="http://outlet{feed}.example/i/{n}.jpg" alt=""/></p>' + paragraphs
    return NewsItem(
        feed=feed,
        n=n,
        title=title,
        link=f"http://outlet{feed}.example/news/{n}.html?utm_source=rss",
        guid=f"outlet{feed}-{n}",
        published=when,
        author=f"Reporter {n % 7}",
        category=rng.choice(_NOUNS),
        description=desc,
        story=story,
    )


def item_xml(item: NewsItem) -> str:
    """One RSS 2.0 <item>."""
    return (
        f"<item><title>{_escape(item.title)}</title>"
        f"<link>{item.link}</link>"
        f'<guid isPermaLink="false">{item.guid}</guid>'
        f"<pubDate>{format_datetime(item.published, usegmt=True)}</pubDate>"
        f"<dc:creator>{item.author}</dc:creator>"
        f"<category>{item.category}</category>"
        f"<description>{_escape(item.description)}</description></item>"
    )


class Farm:
    """The feeds' content: a pure function of (feed, round), so any run sees the same bytes."""

    def __init__(self, feeds: int, new_per_round: int = 3, latency: float = 0.0) -> None:
        self.feeds = feeds
        self.new_per_round = new_per_round
        self.latency = latency
        self.round = 0
        self._cache: dict[tuple[int, int], bytes] = {}

    def size(self, feed: int) -> int:
        """Items in a feed: 20-50, fixed per feed."""
        return 20 + int(hashlib.blake2b(b"%d" % feed, digest_size=2).digest()[0]) * 31 // 256

    def etag(self, feed: int) -> str:
        return f'"f{feed}-r{self.round}"'

    def last_modified(self) -> str:
        return format_datetime(EPOCH + timedelta(hours=self.round), usegmt=True)

    def body(self, feed: int) -> bytes:
        key = (feed, self.round)
        body = self._cache.get(key)
        if body is None:
            if len(self._cache) > 25_000:  # two rounds of 10k feeds, about 1.5 GB
                self._cache.clear()
            body = self._cache[key] = self._render(feed, self.round)
        return body

    def _render(self, feed: int, rnd: int) -> bytes:
        size = self.size(feed)
        newest = size + rnd * self.new_per_round  # item numbers 1..newest exist now
        out = [
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>Outlet {feed}</title>"
            f"<link>http://outlet{feed}.example/</link>"
            f"<description>News from outlet {feed}</description>"
            f"<lastBuildDate>{self.last_modified()}</lastBuildDate>"
        ]
        for n in range(newest, newest - size, -1):
            # an item keeps its date from round to round, as a real outlet's does; the
            # K new ones of a round fill the hour since the last (Last-Modified)
            when = EPOCH + timedelta(minutes=60 * (n - size) / max(1, self.new_per_round))
            out.append(item_xml(news_item(feed, n, when, max(50, self.feeds * 2))))
        out.append("</channel></rss>\n")
        return "".join(out).encode()


class _Protocol(asyncio.Protocol):
    """Just enough HTTP/1.1 for GET with keep-alive; one request at a time per connection."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.busy = True
        if self.farm.latency:
            asyncio.get_running_loop().call_later(
                self.farm.latency, self._answer, parts[1] if len(parts) > 1 else "/", headers
            )
        else:
            self._answer(parts[1] if len(parts) > 1 else "/", headers)

    def _answer(self, path: str, headers: dict[str, str]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        farm = self.farm
        extra = ""
        if path.startswith("/_round/"):
            farm.round = int(path.rsplit("/", 1)[1])
            status, body = "200 OK", f"round {farm.round}\n".encode()
        elif path.startswith("/feed/") and path.endswith(".xml"):
            try:
                feed = int(path[6:-4])
            except ValueError:
                feed = -1
            if not 0 <= feed < farm.feeds:
                status, body = "404 Not Found", b"no such feed\n"
            else:
                etag, lm = farm.etag(feed), farm.last_modified()
                extra = f"ETag: {etag}\r\nLast-Modified: {lm}\r\n"
                inm, ims = headers.get("if-none-match"), headers.get("if-modified-since")
                if (inm is not None and inm == etag) or (inm is None and ims == lm):
                    status, body = "304 Not Modified", b""
                else:
                    status, body = "200 OK", farm.body(feed)
                    extra += "Content-Type: application/rss+xml; charset=utf-8\r\n"
        else:
            status, body = "404 Not Found", b"not here\n"
        close = headers.get("connection", "").lower() == "close"
        self.transport.write(
            (
                f"HTTP/1.1 {status}\r\nServer: farm\r\n{extra}Content-Length: {len(body)}\r\n"
                f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
            ).encode()
            + body
        )
        self.busy = False
        if close:
            self.transport.close()
        elif self.buffer:
            self._next()


async def serve(farm: Farm, port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(farm), "127.0.0.1", port, backlog=1024)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    global HEADLINES
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--new", type=int, default=3, help="new items per feed per round")
    ap.add_argument("--latency", type=float, default=0.0, help="milliseconds per answer")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--headlines", choices=("plain", "templated"), default="plain")
    args = ap.parse_args(argv)
    HEADLINES = args.headlines
    farm = Farm(args.feeds, args.new, args.latency / 1000)
    try:
        asyncio.run(serve(farm, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
