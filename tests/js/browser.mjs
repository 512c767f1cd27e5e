// Loads a page in headless Chromium (Debian's, driven by playwright-core), follows every
// feed autodiscovery <link rel="alternate">, and takes a screenshot.
// Usage: node browser.mjs PAGE_URL SCREENSHOT_PATH [WIDTHxHEIGHT]
// A width under 600 is a phone: a mobile viewport, where the page's viewport meta decides
// the layout width.
// Prints {links: [{href, type, title, status, contentType, body}], console: [...],
//         pageErrors: [...], failedRequests: [...], badResponses: [{url, status}],
//         text, headlines: [...], scrollWidth, innerWidth, fontSize}.
import { chromium } from 'playwright-core'

const [pageUrl, screenshot, size = '1000x700'] = process.argv.slice(2)
const [width, height] = size.split('x').map(Number)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  // Without the background-networking flags Chromium tries outside hosts at every start.
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'
  ]
})
const result = { links: [], console: [], pageErrors: [], failedRequests: [], badResponses: [] }
try {
  const phone = width < 600
  const context = await browser.newContext({
    viewport: { width, height },
    ...(phone ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {})
  })
  const page = await context.newPage()
  // Chromium reports CSP violations ("Refused to ...") as console errors.
  page.on('console', (m) => result.console.push({ type: m.type(), text: m.text(), url: m.location().url }))
  page.on('pageerror', (e) => result.pageErrors.push(String(e)))
  page.on('requestfailed', (r) => result.failedRequests.push(r.url()))
  page.on('response', (r) => { if (r.status() >= 400) result.badResponses.push({ url: r.url(), status: r.status() }) })
  const resp = await page.goto(pageUrl, { waitUntil: 'load' })
  result.status = resp.status()
  result.csp = resp.headers()['content-security-policy'] ?? null
  result.title = await page.title()
  result.text = await page.innerText('body')
  result.headlines = await page.$$eval('h2', (els) => els.map((e) => e.innerText))
  Object.assign(result, await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    fontSize: parseFloat(getComputedStyle(document.body).fontSize)
  })))
  const links = await page.$$eval('link[rel="alternate"]', (els) =>
    els.map((e) => ({ href: e.href, type: e.type, title: e.title })))
  for (const link of links) {
    const r = await context.request.get(link.href)
    result.links.push({
      ...link,
      status: r.status(),
      contentType: r.headers()['content-type'],
      body: await r.text()
    })
  }
  await page.screenshot({ path: screenshot, fullPage: true })
} finally {
  await browser.close()
}
process.stdout.write(JSON.stringify(result) + '\n')
