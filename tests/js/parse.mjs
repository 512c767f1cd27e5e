// Reads feeds with feedsmith, a parser that shares no code with feedparser, and prints
// what a reader would keep of each: {url: {format, items: [{id, title, link, author}]}}.
// Usage: node parse.mjs URL...
import { parseFeed } from 'feedsmith'

const text = (v) => (v && typeof v === 'object' ? v.value : v) ?? null

function items (format, feed) {
  if (format === 'atom') {
    return (feed.entries ?? []).map((e) => ({
      id: e.id ?? null,
      title: text(e.title),
      link: (e.links ?? []).find((l) => !l.rel || l.rel === 'alternate')?.href ?? null,
      author: e.authors?.[0]?.name ?? null
    }))
  }
  if (format === 'rss') {
    return (feed.items ?? []).map((e) => ({
      id: text(e.guid),
      title: e.title ?? null,
      link: e.link ?? null,
      author: e.dc?.creators?.[0] ?? e.authors?.[0]?.name ?? null
    }))
  }
  return (feed.items ?? []).map((e) => ({
    id: e.id ?? null,
    title: e.title ?? null,
    link: e.url ?? null,
    author: e.authors?.[0]?.name ?? null
  }))
}

const out = {}
for (const url of process.argv.slice(2)) {
  const resp = await fetch(url)
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`)
  const { format, feed } = parseFeed(await resp.text())
  out[url] = { format, items: items(format, feed) }
}
process.stdout.write(JSON.stringify(out) + '\n')
