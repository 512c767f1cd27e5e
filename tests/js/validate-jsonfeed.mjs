// Validates JSON Feed documents against the JSON Feed 1.1 schema that the npm package
// jsonfeed-schema ships, with ajv (formats checked: uri, date-time, email).
// Usage: node validate-jsonfeed.mjs URL...   Prints {url: [errors]}; exits 1 if any.
import Ajv from 'ajv'
import addFormats from 'ajv-formats'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const schema = require('jsonfeed-schema/schema-v1.1.json')
const ajv = new Ajv({ allErrors: true, strict: false })
addFormats(ajv)
const validate = ajv.compile(schema)

const out = {}
let bad = false
for (const url of process.argv.slice(2)) {
  const resp = await fetch(url)
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`)
  const ok = validate(await resp.json())
  out[url] = ok ? [] : validate.errors.map((e) => `${e.instancePath} ${e.message}`)
  bad ||= !ok
}
process.stdout.write(JSON.stringify(out) + '\n')
process.exit(bad ? 1 : 0)
