// Writes .br and .gz siblings of every compressible file of the build, which the web plugin
// serves by Accept-Encoding (nothing is compressed per request). index.html is left alone: its
// CSP nonce changes with every response.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'

const out = process.env.SYNTHORG_DASHBOARD_OUT || 'dist'
const compressible = /\.(js|mjs|css|svg|json|map|txt|html|webmanifest)$/

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) walk(path)
    else if (compressible.test(name) && name !== 'index.html') compress(path)
  }
}

function compress(path) {
  const data = readFileSync(path)
  if (data.length < 256) return
  const br = brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } })
  const gz = gzipSync(data, { level: 9 })
  if (br.length < data.length) writeFileSync(path + '.br', br)
  if (gz.length < data.length) writeFileSync(path + '.gz', gz)
}

walk(out)
